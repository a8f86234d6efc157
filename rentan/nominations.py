"""A village's nomination list: validated row by row, each valid row started as a workflow.

Valid rows are accepted even when others are rejected. Each accepted row is a workflow started
together with its ``nominate`` Update (update-with-start), which hands the enrollment row back;
the call writes the list's rows in one transaction before it answers, so an accepted row is
durable (the workflow) and already readable (the projection). The workflow id
derives from a keyed hash of NIK + program, so the same person nominated again for the same
period, by any village, reaches the same workflow and is refused with a pointer to it; the same
list sent twice changes nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlmodel import Session
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError

from activities import audit
from activities.projection import enrollment_id_for, program_terms, write_nomination
from domain import nik as nik_rules
from domain.errors import FieldError
from domain.nomination import ProgramRules, WorkerRow, validate_row
from domain.premium import period_premium
from domain.regions import regions
from models.db import session_scope
from models.tables import Program
from rentan.logs import get_logger
from rentan.temporal import NOT_SENT_ERRORS
from workflows import search_attributes as sa
from workflows.enrollment import EnrollmentWorkflow
from workflows.messages import (
    Actor,
    EnrollmentInput,
    NominationOutcome,
    NominationRecord,
    NominationRefusal,
    NominationRequest,
    PersonData,
    StepResult,
)

log = get_logger("rentan.nominations")

# Workflows started at once for one list: enough to answer 1,000 rows in seconds without
# flooding the Temporal frontend.
START_CONCURRENCY = 64
# How long one row's update-with-start may wait for its workflow to accept the nomination: a
# row not accepted by then (Temporal overloaded, no worker polling) is answered "send the list
# again", so a list's call answers instead of hanging. (The SDK's deadline bounds the call that
# sends the Update, not its later polls for the outcome; the nomination's handler answers as it
# accepts, so in practice that call is the whole wait.) Far above a loaded server's answer.
NOMINATION_RPC_TIMEOUT = dt.timedelta(seconds=60)


class NominationRefused(Exception):
    """The whole list is refused (unknown village, program closed); the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Accepted:
    row: int
    enrollment_id: str
    nik_masked: str
    state: str


@dataclass(frozen=True)
class Rejected:
    row: int
    nik_masked: str
    errors: list[FieldError]


@dataclass
class NominationResult:
    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


async def nominate(
    client: Client,
    engine: Engine,
    *,
    program: Program,
    village_code: str,
    rows: list[tuple[int, WorkerRow]],
    actor: Actor,
    id_secret: bytes,
    task_queue: str,
    today: dt.date,
) -> NominationResult:
    """Validate ``rows`` (numbered as the village sees them) and start a workflow per valid row."""
    village = regions().villages.get(village_code)
    if village is None:
        raise NominationRefused("village_code", f"unknown village code {village_code!r}")
    if program.period_end < today:
        raise NominationRefused(
            "program", f"program {program.code} ended on {program.period_end}: no nominations"
        )
    rules = ProgramRules(program.period_start, program.period_end, program.max_age)
    terms = program_terms(program)
    result = NominationResult()
    seen: dict[str, int] = {}
    starts: list[tuple[int, EnrollmentInput]] = []
    for number, raw in rows:
        worker, errors = validate_row(raw, village=village, rules=rules)
        masked = nik_rules.mask(nik_rules.normalize(raw.nik or ""))
        if worker is not None and worker.nik in seen:
            errors = [FieldError("nik", f"same NIK as row {seen[worker.nik]} of this list")]
            worker = None
        if worker is None:
            result.rejected.append(Rejected(number, masked, errors))
            continue
        seen[worker.nik] = number
        person_key = nik_rules.person_key(worker.nik, secret=id_secret)
        starts.append(
            (
                number,
                EnrollmentInput(
                    enrollment_id=enrollment_id_for(person_key, program.code),
                    program=terms,
                    person=PersonData(
                        nik=worker.nik,
                        full_name=worker.full_name,
                        birth_date=worker.birth_date,
                        gender=worker.gender,
                        phone=worker.phone,
                    ),
                    person_key=person_key,
                    village_code=village.code,
                    district_code=village.district_code,
                    category=worker.category.value,
                    declared_income_idr=worker.declared_income_idr,
                    premium_idr=period_premium(
                        worker.declared_income_idr, program.period_start, program.period_end
                    ),
                    nominated_by=actor,
                    lean_steps=True,
                    budget_recorded_by_registration=True,
                ),
            )
        )

    limit = asyncio.Semaphore(START_CONCURRENCY)

    async def start(number: int, inp: EnrollmentInput) -> _Started | Rejected:
        async with limit:
            return await _start_one(client, number, inp, actor=actor, task_queue=task_queue)

    outcomes = await asyncio.gather(*(start(n, inp) for n, inp in starts))
    started = [o for o in outcomes if isinstance(o, _Started)]
    result.rejected += [o for o in outcomes if isinstance(o, Rejected)]
    # In the order the workflows took them: the list's audit entries then read in time order.
    records = sorted(
        (o.step.nomination for o in started if o.step.nomination is not None),
        key=lambda r: r.occurred_at,
    )
    try:
        written = await asyncio.to_thread(record_nominations, engine, records)
    except SQLAlchemyError as exc:
        # The database is down or locked out: the workflows keep the nominations, and the same
        # list sent again writes their rows. (The exception's text would carry the rows' values.)
        log.warning("nomination rows not written", rows=len(records), error=type(exc).__name__)
        written = {r.input.enrollment_id: _SEND_AGAIN for r in records}
    for outcome in started:
        record = outcome.step.nomination
        masked = nik_rules.mask(outcome.inp.person.nik)
        # No record: nothing left to write, the row is there already.
        failed = written[record.input.enrollment_id] if record is not None else None
        if failed is None:
            result.accepted.append(
                Accepted(outcome.row, outcome.step.enrollment_id, masked, outcome.step.state)
            )
            continue
        result.rejected.append(Rejected(outcome.row, masked, [failed.error]))
        if record is not None and failed.refusal_kind is not None:
            await _refuse(client, record, failed)
    result.accepted.sort(key=lambda a: a.row)
    result.rejected.sort(key=lambda r: r.row)
    log.info(
        "nomination list processed",
        program=program.code,
        village_code=village_code,
        accepted=len(result.accepted),
        rejected=len(result.rejected),
    )
    return result


@dataclass(frozen=True)
class RowNotWritten:
    """Why a row's write did not happen. ``refusal_kind``: the row is refused for good and its
    run fails with that type; None: not now, and the same list sent again writes it (the
    repeat's answer hands the row back; the workflow keeps the nomination meanwhile)."""

    error: FieldError
    refusal_kind: str | None = None


# A row neither accepted nor refused (Temporal or the database did not answer in time).
SEND_LIST_AGAIN = "could not be recorded right now; send the list again"
_NOT_RECORDED = FieldError("row", SEND_LIST_AGAIN)
_SEND_AGAIN = RowNotWritten(_NOT_RECORDED)


@dataclass(frozen=True)
class _Started:
    """A row whose workflow took the nomination: its answer holds the row to write."""

    row: int
    inp: EnrollmentInput
    step: StepResult


def record_nominations(
    engine: Engine, records: list[NominationRecord]
) -> dict[str, RowNotWritten | None]:
    """Write the rows the workflows handed back, in one transaction: per enrollment id, None
    if written (or there already), or why not. Idempotent, as every projection write."""
    if not records:
        return {}
    try:
        return _write_rows(engine, records, isolated=False)
    except (IntegrityError, DataError):
        # One row spoiled the transaction (a renewal reserving the same person meanwhile, a
        # value the database refuses): again, each row on its own savepoint.
        return _write_rows(engine, records, isolated=True)


def _write_rows(
    engine: Engine, records: list[NominationRecord], *, isolated: bool
) -> dict[str, RowNotWritten | None]:
    written: dict[str, RowNotWritten | None] = {}
    with session_scope(engine) as session:
        # The audit chain's lock first, as the worker's writer takes it (PostgreSQL deadlocks).
        audit.lock_chain(session)
        for record in records:
            key = record.input.enrollment_id
            written[key] = (
                _write_isolated(session, record)
                if isolated
                else _as_written(write_nomination(session, record), record)
            )
    return written


def _write_isolated(session: Session, record: NominationRecord) -> RowNotWritten | None:
    """One row on its own savepoint: what it cannot write costs the others nothing."""
    for _ in range(2):
        try:
            with session.begin_nested():
                return _as_written(write_nomination(session, record), record)
        except IntegrityError:
            # Lost the race for the person's period: the holder is there now, once more.
            continue
        except DataError as exc:
            message = f"refused by the database ({type(exc.orig).__name__}); correct the row"
            return RowNotWritten(FieldError("row", message), refusal_kind="InvalidNomination")
    return _SEND_AGAIN


def _as_written(outcome: NominationOutcome, record: NominationRecord) -> RowNotWritten | None:
    if outcome.recorded:
        return None
    return RowNotWritten(
        FieldError("nik", outcome.refusal(record.input.program.code)),
        refusal_kind="DuplicateNomination",
    )


# A signal that cannot be sent is tried again this often before the call gives up on it.
REFUSAL_ATTEMPTS = 3


async def _refuse(client: Client, record: NominationRecord, failed: RowNotWritten) -> None:
    """Tell the run its row cannot be written: it fails, as a refused nomination's does, and the
    id stays free. To this run only (``run_id``): a later run of the id is not refused.
    Should the signal not get through, the workflow writes the row itself before its first
    write (its reminder): it finds the same holder and fails then, or, if the holder has gone
    meanwhile, writes the row, and the person is nominated after all."""
    handle = client.get_workflow_handle(record.workflow_id, run_id=record.run_id)
    refusal = NominationRefusal(
        failed.error.message, kind=failed.refusal_kind or "DuplicateNomination"
    )
    for attempt in range(1, REFUSAL_ATTEMPTS + 1):
        try:
            await handle.signal(EnrollmentWorkflow.refuse_nomination, refusal)
            return
        except RPCError as err:
            log.warning(
                "refusal not sent",
                workflow_id=record.workflow_id,
                attempt=attempt,
                error=err.status.name if err.status else "unknown",
            )
            await asyncio.sleep(0.2 * attempt)


async def _start_one(
    client: Client, number: int, inp: EnrollmentInput, *, actor: Actor, task_queue: str
) -> _Started | Rejected:
    masked = nik_rules.mask(inp.person.nik)
    operation = WithStartWorkflowOperation(
        EnrollmentWorkflow.run,
        inp,
        id=inp.enrollment_id,
        task_queue=task_queue,
        # A running workflow with this id is this person's enrollment in this period: the
        # nominate Update goes to it and says whether it is the same village's list again.
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        # A closed enrollment (withdrawn, rejected...) keeps its id; a refused duplicate attempt
        # fails its run, so it does not block a later, legitimate nomination.
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(sa.PROGRAM, inp.program.code),
                SearchAttributePair(sa.VILLAGE, inp.village_code),
                SearchAttributePair(sa.DISTRICT, inp.district_code),
                SearchAttributePair(sa.CATEGORY, inp.category),
            ]
        ),
    )
    try:
        step: StepResult = await client.execute_update_with_start_workflow(
            EnrollmentWorkflow.nominate,
            NominationRequest(actor=actor, village_code=inp.village_code, recorded_by_caller=True),
            start_workflow_operation=operation,
            rpc_timeout=NOMINATION_RPC_TIMEOUT,
        )
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause)
        return Rejected(number, masked, [FieldError("nik", message)])
    except WorkflowAlreadyStartedError:
        return Rejected(
            number,
            masked,
            [
                FieldError(
                    "nik",
                    f"this person's enrollment {inp.enrollment_id} for {inp.program.code} is "
                    "closed (withdrawn, rejected or expired); it cannot be nominated again "
                    "for the same period",
                )
            ],
        )
    except NOT_SENT_ERRORS as err:
        # Temporal unreachable, or its deadline passed (a loaded server): the workflow may have
        # taken the nomination or not. The row is answered "send the list again": a resend
        # reaches the same workflow (its id is the person's) and hands its row back.
        log.warning(
            "nomination not started", row=number, error=str(err)[:200] or type(err).__name__
        )
        return Rejected(number, masked, [_NOT_RECORDED])
    return _Started(number, inp, step)
