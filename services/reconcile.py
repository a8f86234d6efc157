"""``rentan reconcile``: does the projection hold what the workflows say, and the ledger what they
hold?

Temporal is the truth of the process; the projection follows it. For every enrollment workflow
Temporal's visibility lists (by program, through the ``RentanProgram`` search attribute), each
run is asked for the records it made (the ``records`` query) and the commitments it holds (the
``view`` query), and compared with the database:

* each record has its audit entry (its key: enrollment, run, seq);
* each enrollment row is at least as new as the workflow's newest record of it, and shows that
  record's snapshot when it is the one the row holds;
* each commitment a run holds is open in the ledger, and each open commitment of the program is
  held by its enrollment's workflow (or belongs to an approval still under way);
* each row of the program has a workflow.

``repair`` writes a workflow's records again through the recorder (``models.recorder``, the one
path every record takes) and releases commitments nobody holds. Workflows are checked in id
order, ``rate_per_s`` runs a second at most, and progress is kept in a checkpoint file after
every ``CHUNK`` workflows, so an interrupted check resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus
from temporalio.service import RPCError

from core.sealing import Sealer
from domain.records import Commitment, Record
from models import ledger
from models.db import session_scope
from models.recorder import write_records
from models.tables import AuditEvent, Enrollment
from models.tables import Commitment as CommitmentRow
from workflows.enrollment import EnrollmentWorkflow
from workflows.messages import EnrollmentView
from workflows.search_attributes import PROGRAM

CHUNK = 200  # workflows per checkpoint
MAX_SHOWN = 50  # differences kept in the report (all are counted)


@dataclass(frozen=True)
class Difference:
    kind: str
    enrollment_id: str
    detail: str


@dataclass
class Report:
    program: str | None
    workflows: int = 0
    runs: int = 0
    differences: int = 0
    repaired: int = 0
    shown: list[Difference] = field(default_factory=list)
    resumed_after: str | None = None
    # (approval, enrollment) of every commitment a checked workflow holds.
    held: set[tuple[str, str]] = field(default_factory=set, repr=False)

    def add(self, differences: Iterable[Difference]) -> None:
        for difference in differences:
            self.differences += 1
            if len(self.shown) < MAX_SHOWN:
                self.shown.append(difference)


@dataclass(frozen=True)
class _Run:
    workflow_id: str
    run_id: str
    started: dt.datetime
    records: list[Record]
    view: EnrollmentView | None


class Pace:
    """At most ``rate`` calls a second, spread evenly."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.clock = clock
        self.sleep = sleep
        self.next = clock()

    async def wait(self) -> None:
        now = self.clock()
        self.next = max(self.next + self.interval, now)
        if self.next > now:
            await self.sleep(self.next - now)


async def reconcile(
    client: Client,
    engine: Engine,
    *,
    program: str | None,
    repair: bool,
    sealer: Sealer,
    rate_per_s: float,
    checkpoint: Path,
    restart: bool = False,
    progress: Callable[[Report], None] | None = None,
) -> Report:
    """Check (and with ``repair``, fix) the projection against the workflows."""
    report = Report(program=program)
    repair_with = sealer if repair else None
    done_until = (
        None if restart else await asyncio.to_thread(_resume, checkpoint, report, program, repair)
    )
    runs = await _list_runs(client, program)
    groups: dict[str, list[WorkflowExecution]] = {}
    for execution in runs:
        groups.setdefault(execution.id, []).append(execution)
    pace = Pace(rate_per_s)
    seen = set(groups)
    todo = sorted(w for w in groups if done_until is None or w > done_until)
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start : start + CHUNK]
        fetched = await asyncio.gather(*(_fetch_group(client, groups[w], pace) for w in chunk))
        for workflow_runs in fetched:
            await _settle_group(engine, workflow_runs, report, repair_with)
            report.workflows += 1
            report.runs += len(workflow_runs)
        await asyncio.to_thread(_save, checkpoint, report, program, repair, chunk[-1])
        if progress is not None:
            progress(report)
    # Rows no listed workflow accounts for: their own workflow is asked (a renewal reserves the
    # next period from the previous period's run, listed under that program).
    for workflow_id in await asyncio.to_thread(_unlisted_workflows, engine, program, seen):
        workflow_runs = await _fetch_group(client, None, pace, workflow_id=workflow_id)
        if not workflow_runs:
            report.add(
                [
                    Difference(
                        "no workflow", workflow_id, "rows name a workflow Temporal does not know"
                    )
                ]
            )
            continue
        await _settle_group(engine, workflow_runs, report, repair_with)
    report.add(await _orphan_commitments(client, engine, program, repair, report.held))
    await asyncio.to_thread(checkpoint.unlink, missing_ok=True)
    return report


async def _settle_group(
    engine: Engine, runs: list[_Run], report: Report, repair_with: Sealer | None
) -> None:
    """Check one workflow; to repair, write its records again and check once more."""
    found = await asyncio.to_thread(_check_group, engine, runs)
    if found and repair_with is not None:
        await asyncio.to_thread(_repair_group, engine, runs, repair_with)
        report.repaired += len(found)
        found = await asyncio.to_thread(_check_group, engine, runs)
    report.add(found)
    latest = runs[-1].view if runs else None
    if latest is not None:
        for commitment in (latest.commitment, latest.next_commitment):
            if commitment is not None:
                report.held.add((commitment.approval_id, commitment.enrollment_id))


async def _list_runs(client: Client, program: str | None) -> list[WorkflowExecution]:
    query = f"WorkflowType = '{EnrollmentWorkflow.__name__}'"
    if program is not None:
        query += f" AND {PROGRAM.name} = '{program}'"
    return [execution async for execution in client.list_workflows(query)]


async def _fetch_group(
    client: Client,
    executions: list[WorkflowExecution] | None,
    pace: Pace,
    *,
    workflow_id: str | None = None,
) -> list[_Run]:
    """Every listed run of one workflow asked for its records, oldest first."""
    if executions is None:
        assert workflow_id is not None
        try:
            described = await client.get_workflow_handle(workflow_id).describe()
        except RPCError:
            return []
        executions = [described]
    runs: list[_Run] = []
    for execution in sorted(executions, key=lambda e: e.start_time):
        await pace.wait()
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        records: list[Record] = await handle.query(EnrollmentWorkflow.records)
        view: EnrollmentView | None = None
        if execution.status == WorkflowExecutionStatus.RUNNING or execution is executions[-1]:
            view = await handle.query(EnrollmentWorkflow.view)
        runs.append(_Run(execution.id, execution.run_id, execution.start_time, records, view))
    return runs


def _check_group(engine: Engine, runs: list[_Run]) -> list[Difference]:
    """One workflow's runs against the projection and the ledger."""
    records = [r for run in runs for r in run.records]
    if not records:
        return []
    newest: dict[str, Record] = {}
    for record in records:
        known = newest.get(record.snapshot.enrollment_id)
        if known is None or _order(record) > _order(known):
            newest[record.snapshot.enrollment_id] = record
    found: list[Difference] = []
    with Session(engine) as session:
        keys = [r.key for r in records]
        present = set(
            session.exec(select(AuditEvent.event_key).where(col(AuditEvent.event_key).in_(keys)))
        )
        for record in records:
            if record.key not in present:
                found.append(
                    Difference(
                        "record missing",
                        record.snapshot.enrollment_id,
                        f"{record.action}: {record.key}",
                    )
                )
        for enrollment_id, record in newest.items():
            row = session.get(Enrollment, enrollment_id)
            found += _row_difference(row, record)
        latest = runs[-1].view
        if latest is not None:
            held = [c for c in (latest.commitment, latest.next_commitment) if c is not None]
            for commitment in held:
                if not _is_open(session, commitment):
                    found.append(
                        Difference(
                            "commitment not open",
                            commitment.enrollment_id,
                            f"the workflow holds approval {commitment.approval_id}",
                        )
                    )
    return found


def _row_difference(row: Enrollment | None, record: Record) -> list[Difference]:
    s = record.snapshot
    if row is None:
        return [Difference("row missing", s.enrollment_id, f"workflow shows {s.state}")]
    row_order = (_utc(row.run_started_at), row.seq)
    if row_order < _order(record):
        return [
            Difference(
                "row behind",
                s.enrollment_id,
                f"row shows {row.state} (seq {row.seq}); workflow shows {s.state} (seq {s.seq})",
            )
        ]
    if row.run_id == s.run_id and row.seq == s.seq:
        shown = (row.state, row.kpj_number, row.funding_source, row.coverage_end, row.attention)
        truth = (s.state, s.kpj_number, s.funding_source, s.coverage_end, s.attention)
        if shown != truth:
            return [Difference("row differs", s.enrollment_id, f"row {shown}, workflow {truth}")]
    return []


def _repair_group(engine: Engine, runs: list[_Run], sealer: Sealer) -> None:
    """Write the workflow's records again: the recorder keeps what is there and adds the rest."""
    with session_scope(engine) as session:
        write_records(session, [r for run in runs for r in run.records], sealer)


async def _orphan_commitments(
    client: Client,
    engine: Engine,
    program: str | None,
    repair: bool,
    held: set[tuple[str, str]],
) -> list[Difference]:
    """Open commitments no workflow holds: released when ``repair``, unless their approval is
    still under way (it may not have told the enrollment yet). A commitment the check saw held
    needs no further question; any other is asked of its workflow."""
    with Session(engine) as session:
        query = select(CommitmentRow, Enrollment.workflow_id).join(
            Enrollment, col(Enrollment.id) == col(CommitmentRow.enrollment_id), isouter=True
        )
        query = query.where(col(CommitmentRow.released_at).is_(None))
        if program is not None:
            query = query.where(CommitmentRow.program_code == program)
        open_rows = list(session.exec(query))
    found: list[Difference] = []
    for commitment, workflow_id in open_rows:
        if (commitment.approval_id, commitment.enrollment_id) in held:
            continue
        if await _held_by_workflow(client, workflow_id, commitment):
            continue
        if await _approval_running(client, commitment.approval_id):
            continue
        found.append(
            Difference(
                "commitment not held",
                commitment.enrollment_id,
                f"approval {commitment.approval_id} holds Rp {commitment.amount_idr:,} "
                "that no workflow holds",
            )
        )
        if repair:
            ref = Commitment(
                commitment.approval_id,
                commitment.program_code,
                commitment.enrollment_id,
                "",
                commitment.amount_idr,
            )
            with session_scope(engine) as session:
                ledger.release(
                    session,
                    ref,
                    by="rentan reconcile",
                    reason="held by no workflow",
                    at=dt.datetime.now(dt.UTC),
                )
    return found


async def _held_by_workflow(
    client: Client, workflow_id: str | None, commitment: CommitmentRow
) -> bool:
    if workflow_id is None:
        return False
    try:
        view: EnrollmentView = await client.get_workflow_handle(workflow_id).query(
            EnrollmentWorkflow.view
        )
    except RPCError:
        return False
    return any(
        c is not None
        and c.approval_id == commitment.approval_id
        and c.enrollment_id == commitment.enrollment_id
        for c in (view.commitment, view.next_commitment)
    )


async def _approval_running(client: Client, approval_id: str) -> bool:
    try:
        described = await client.get_workflow_handle(approval_id).describe()
    except RPCError:
        return False
    return described.status == WorkflowExecutionStatus.RUNNING


def _unlisted_workflows(engine: Engine, program: str | None, seen: set[str]) -> list[str]:
    with Session(engine) as session:
        query = select(Enrollment.workflow_id).distinct()
        if program is not None:
            query = query.where(Enrollment.program_code == program)
        return sorted(w for w in session.exec(query) if w not in seen)


def _is_open(session: Session, commitment: Commitment) -> bool:
    row = session.exec(
        select(CommitmentRow.id).where(
            CommitmentRow.approval_id == commitment.approval_id,
            CommitmentRow.enrollment_id == commitment.enrollment_id,
            col(CommitmentRow.released_at).is_(None),
        )
    ).first()
    return row is not None


def _order(record: Record) -> tuple[dt.datetime, int]:
    return (_utc(record.snapshot.run_started_at), record.snapshot.seq)


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _resume(checkpoint: Path, report: Report, program: str | None, repair: bool) -> str | None:
    """Where an interrupted check of the same kind stopped, if it did."""
    try:
        saved = json.loads(checkpoint.read_text())
    except (OSError, ValueError):
        return None
    if saved.get("program") != program or saved.get("repair") != repair:
        return None
    counts = saved.get("report", {})
    report.workflows = int(counts.get("workflows", 0))
    report.runs = int(counts.get("runs", 0))
    report.differences = int(counts.get("differences", 0))
    report.repaired = int(counts.get("repaired", 0))
    report.resumed_after = saved.get("done_until")
    return report.resumed_after


def _save(
    checkpoint: Path, report: Report, program: str | None, repair: bool, done_until: str
) -> None:
    counts = {k: v for k, v in asdict(report).items() if k != "shown"}
    data = {"program": program, "repair": repair, "done_until": done_until, "report": counts}
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    tmp = checkpoint.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, default=str))
    tmp.replace(checkpoint)
