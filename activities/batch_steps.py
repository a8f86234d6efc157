"""The activities of the batch workflows: send a batch's Updates, write what they answer.

Each activity is run again whole if its worker dies (``workflows.batches``), so each part is
safe to repeat: a claim or a commitment already made is found, an Update sent again under the
batch's id is answered as the first time (by Temporal, and by the enrollment's own check of the
batch id), and the records, releases and refusals are written with keys that make a second
write a no-op. Everything the batch's Updates answered is written in one transaction at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowFailureError,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.recording import Recording
from core.temporal import NOT_SENT_ERRORS, refusal_of
from domain.nik import mask
from domain.records import Actor, Commitment, Record
from domain.states import State
from models import audit_chain, claims, ledger
from models.conflicts import CONFLICT_MESSAGE, Conflict
from models.db import session_scope
from models.tables import Enrollment
from workflows import search_attributes as sa
from workflows.enrollment import DUPLICATE_NOMINATION, EnrollmentWorkflow
from workflows.messages import (
    APPROVE_BUDGET_BATCH,
    NOMINATE_LIST,
    VERIFY_BATCH,
    BatchResult,
    BudgetApproval,
    BudgetBatch,
    EnrollmentInput,
    ListRow,
    Nomination,
    NominationList,
    Outcome,
    StepResult,
    StepTarget,
    Verification,
    VerificationBatch,
)

T = TypeVar("T")
# Updates in flight at once for one batch: a list of 1,000 answers in seconds without flooding
# the Temporal frontend.
CONCURRENCY = 32
# One Update's call; past it the Update is sent again (its id makes that safe).
UPDATE_RPC_TIMEOUT = dt.timedelta(seconds=30)
SEND_ATTEMPTS = 4
# Well inside the batch workflows' heartbeat timeout (workflows/batches.py).
HEARTBEAT_EVERY_S = 1.0
# A person's enrollment that ended this way may be nominated again in the same period.
NOMINATED_AGAIN_AFTER = frozenset({State.REJECTED.value, State.WITHDRAWN.value, "expired"})
AWAITING_BUDGET = (State.VERIFIED.value, State.RENEWAL_PENDING.value)
# Errors that are answers, not a call that did not get through: the workflow has ended, or a
# closed run holds the id.
_ANSWERS = (RPCStatusCode.NOT_FOUND, RPCStatusCode.ALREADY_EXISTS)


class _WholeRefusal(Exception):
    """A budget approval refused whole: its answer, and the enrollments it named that exist."""

    def __init__(self, result: BatchResult, known: list[StepTarget]) -> None:
        super().__init__(result.refusal)
        self.result = result
        self.known = known


class Refused(Exception):
    """The enrollment refused the step (its validator), or its workflow has ended; ``kind``
    and ``details`` are the refusal's type and details, when the workflow gave them."""

    def __init__(self, message: str, kind: str = "", details: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.details = list(details)


@dataclass
class _Written:
    """What a batch writes at its end, in one transaction."""

    records: list[Record] = field(default_factory=list)
    releases: list[Commitment] = field(default_factory=list)
    refusals: list[audit_chain.AuditEntry] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)


class BatchActivities:
    def __init__(self, engine: Engine, recording: Recording) -> None:
        self.engine = engine
        self.recording = recording

    # --- a village's nomination list --------------------------------------------------------

    @activity.defn(name=NOMINATE_LIST)
    async def nominate_list(self, batch: NominationList) -> BatchResult:
        """Claim each person's period, start (or reach) their enrollments, write the rows."""
        holders = await self.recording.writer.run(
            lambda session: claims.claim(
                session,
                program_code=batch.program_code,
                wanted=[(r.enrollment.person_key, r.enrollment.enrollment_id) for r in batch.rows],
            )
        )
        written = _Written()

        async def one(row: ListRow) -> Outcome:
            inp = row.enrollment
            masked = _masked(inp)
            if holders[inp.person_key] != inp.enrollment_id:
                # Another workflow (the previous period's, renewing) holds the person's place.
                message = f"already enrolled in {batch.program_code} (continuing a previous period)"
                return Outcome(
                    inp.enrollment_id, ok=False, error=message, row=row.row, nik_masked=masked
                )
            step = Nomination(batch.actor, batch.program_code, batch.village_code, batch.batch_id)
            try:
                result = await self._nominate(batch, inp, step)
            except Refused as exc:
                error = exc.message
                if exc.kind == DUPLICATE_NOMINATION:
                    written.conflicts.append(_conflict(batch, inp, str(exc.details[0])))
                    error = CONFLICT_MESSAGE
                return Outcome(
                    inp.enrollment_id, ok=False, error=error, row=row.row, nik_masked=masked
                )
            written.records += result.records
            return Outcome(
                inp.enrollment_id, ok=True, state=result.state, row=row.row, nik_masked=masked
            )

        outcomes = await _each(batch.rows, one)
        await self.recording.write(written.records, conflicts=written.conflicts)
        return BatchResult(outcomes)

    async def _nominate(
        self, batch: NominationList, inp: EnrollmentInput, step: Nomination
    ) -> StepResult:
        """The nomination, with the enrollment's workflow started if none runs. A workflow that
        ended rejected, withdrawn or expired starts a new run: nominated again."""
        client = activity.client()
        for reuse in (
            WorkflowIDReusePolicy.REJECT_DUPLICATE,
            WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        ):

            async def call(reuse: WorkflowIDReusePolicy = reuse) -> StepResult:
                # An operation is used once: each attempt starts from a new one.
                start = WithStartWorkflowOperation(
                    EnrollmentWorkflow.run,
                    inp,
                    id=inp.enrollment_id,
                    task_queue=batch.task_queue,
                    # A running workflow with this id is this person's enrollment this period.
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    id_reuse_policy=reuse,
                    search_attributes=sa.for_enrollment(
                        inp.program.code, inp.village_code, inp.district_code, inp.category
                    ),
                )
                try:
                    result: StepResult = await client.execute_update_with_start_workflow(
                        EnrollmentWorkflow.nominate,
                        step,
                        start_workflow_operation=start,
                        id=step.batch_id,
                        rpc_timeout=UPDATE_RPC_TIMEOUT,
                    )
                except BaseException:
                    # The start's own outcome carries the same failure: taken here, so it is
                    # not reported as never retrieved.
                    with contextlib.suppress(BaseException):
                        await asyncio.wait_for(start.workflow_handle(), 1.0)
                    raise
                return result

            try:
                return await _send(call)
            except (WorkflowAlreadyStartedError, RPCError) as err:
                # A closed run holds the id (the test server says so as a bare ALREADY_EXISTS).
                if isinstance(err, RPCError) and err.status != RPCStatusCode.ALREADY_EXISTS:
                    raise
                ended = await _final_state(client, inp.enrollment_id)
                if ended not in NOMINATED_AGAIN_AFTER:
                    holder = await asyncio.to_thread(_village_of, self.engine, inp.enrollment_id)
                    if holder is not None and holder != batch.village_code:
                        raise Refused("", DUPLICATE_NOMINATION, [holder]) from None
                    raise Refused(
                        f"this person's enrollment {inp.enrollment_id} for {inp.program.code} "
                        f"ended {ended}; it cannot be nominated again for the same period"
                    ) from None
        raise Refused("the enrollment could not be started; send the list again")

    # --- a batch verification ---------------------------------------------------------------

    @activity.defn(name=VERIFY_BATCH)
    async def verify_batch(self, batch: VerificationBatch) -> BatchResult:
        written = _Written()
        step = Verification(batch.actor, batch.approve, batch.reason, batch.batch_id)
        action = "verification"

        async def one(target: StepTarget) -> Outcome:
            try:
                result = await self._step(
                    target.workflow_id, EnrollmentWorkflow.verify, step, batch.batch_id
                )
            except Refused as exc:
                written.refusals.append(
                    _refusal(batch.batch_id, batch.actor, action, target, exc.message)
                )
                return Outcome(target.enrollment_id, ok=False, error=exc.message)
            written.records += result.records
            return Outcome(target.enrollment_id, ok=True, state=result.state)

        outcomes = await _each(batch.targets, one)
        await self.recording.write(written.records, refusals=written.refusals)
        return BatchResult(outcomes)

    # --- a budget approval ------------------------------------------------------------------

    @activity.defn(name=APPROVE_BUDGET_BATCH)
    async def approve_budget_batch(self, batch: BudgetBatch) -> BatchResult:
        """Commit every premium or none, then tell each enrollment; an enrollment that refuses
        gets this approval's commitment released, nothing else."""
        try:
            committed = await asyncio.to_thread(self._commit, batch)
        except _WholeRefusal as refused:  # nothing committed; each enrollment's refusal audited
            reason = refused.result.refusal or "refused"
            await self.recording.write(
                [],
                refusals=[
                    _refusal(batch.approval_id, batch.actor, "budget_approval", target, reason)
                    for target in refused.known
                ],
            )
            return refused.result
        written = _Written()

        async def one(item: tuple[Commitment, StepTarget]) -> Outcome:
            commitment, target = item
            step = BudgetApproval(batch.actor, commitment, batch.reason)
            try:
                result = await self._step(
                    target.workflow_id, EnrollmentWorkflow.approve_budget, step, batch.approval_id
                )
            except Refused as exc:
                written.releases.append(commitment)
                written.refusals.append(
                    _refusal(batch.approval_id, batch.actor, "budget_approval", target, exc.message)
                )
                return Outcome(target.enrollment_id, ok=False, error=exc.message)
            written.records += result.records
            return Outcome(target.enrollment_id, ok=True, state=result.state)

        outcomes = await _each(committed, one)
        await self.recording.write(
            written.records, releases=written.releases, refusals=written.refusals
        )
        return BatchResult(outcomes)

    def _commit(self, batch: BudgetBatch) -> list[tuple[Commitment, StepTarget]]:
        """The all-or-nothing ledger transaction (or, run again, what it committed); raises
        ``_WholeRefusal`` when nothing is committed."""
        ids = list(dict.fromkeys(batch.enrollment_ids))
        with Session(self.engine) as session:
            rows = {
                r.id: r for r in session.exec(select(Enrollment).where(col(Enrollment.id).in_(ids)))
            }
        known = [StepTarget(i, rows[i].workflow_id, rows[i].state) for i in ids if i in rows]
        try:
            with session_scope(self.engine) as session:
                made = {c.enrollment_id: c for c in ledger.made_by(session, batch.approval_id)}
                if not made:
                    problems = _budget_problems(batch, rows)
                    if problems:
                        refusal = "nothing committed: " + "; ".join(problems[:20])
                        raise _WholeRefusal(BatchResult([], refusal, problems), known)
                    ledger.commit(
                        session,
                        approval_id=batch.approval_id,
                        program_code=batch.program_code,
                        source_code=batch.funding_source,
                        claims=[
                            ledger.Claim(i, rows[i].category, rows[i].premium_idr) for i in ids
                        ],
                        actor=batch.actor.name,
                    )
                    made = {c.enrollment_id: c for c in ledger.made_by(session, batch.approval_id)}
        except ledger.CeilingExceeded as exc:
            result = BatchResult(
                [], str(exc), requested_idr=exc.requested, remaining_idr=exc.remaining
            )
            raise _WholeRefusal(result, known) from None
        except ledger.AlreadyFunded as exc:
            problems = [f"{i}: is funded already" for i in exc.enrollment_ids]
            raise _WholeRefusal(
                BatchResult([], f"nothing committed: {exc}", problems), known
            ) from None
        except ledger.BudgetError as exc:
            raise _WholeRefusal(BatchResult([], str(exc)), known) from None
        return [
            (
                Commitment(
                    batch.approval_id,
                    batch.program_code,
                    i,
                    batch.funding_source,
                    made[i].amount_idr,
                ),
                StepTarget(i, rows[i].workflow_id, rows[i].state),
            )
            for i in ids
            if i in made
        ]

    # --- sending ----------------------------------------------------------------------------

    async def _step(self, workflow_id: str, update: Any, step: Any, batch_id: str) -> StepResult:
        """One batch step to one enrollment, under the batch's id."""
        handle = activity.client().get_workflow_handle(workflow_id)
        try:
            return await _send(
                lambda: handle.execute_update(
                    update, step, id=batch_id, rpc_timeout=UPDATE_RPC_TIMEOUT
                )
            )
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
        # The workflow has ended since. Sent again after a crash, the step may have been taken
        # before it ended: its run still holds the records.
        records = await handle.query(EnrollmentWorkflow.records)
        taken = [r for r in records if r.detail.get("batch") == batch_id]
        if not taken:
            raise Refused("the enrollment's workflow has ended; no step can be taken")
        return StepResult(taken[0].snapshot.enrollment_id, taken[-1].snapshot.state, taken)


async def _send(call: Callable[[], Awaitable[StepResult]]) -> StepResult:
    """An Update, sent again while Temporal does not take it (the batch's id makes that safe);
    a refusal raises ``Refused``."""
    for attempt in range(1, SEND_ATTEMPTS + 1):
        try:
            return await call()
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError):
                raise Refused(cause.message, cause.type or "", cause.details) from None
            raise Refused(refusal_of(err)) from None
        except NOT_SENT_ERRORS as err:
            if isinstance(err, RPCError) and err.status in _ANSWERS:
                raise
            if attempt == SEND_ATTEMPTS:
                raise  # the activity fails and runs again
            await asyncio.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


async def _final_state(client: Client, workflow_id: str) -> str:
    """How a closed enrollment's last run ended: its state, or ``failed``."""
    try:
        state: str = await client.get_workflow_handle(workflow_id).result()
    except WorkflowFailureError:
        return "failed"
    return state


async def _each(items: Sequence[T], one: Callable[[T], Awaitable[Outcome]]) -> list[Outcome]:
    """``one`` for every item, ``CONCURRENCY`` at a time, in order. Heartbeats go out every
    ``HEARTBEAT_EVERY_S`` with the progress so far, whether or not an item finished meanwhile
    (an Update held up by a loaded server must not pass for a dead worker)."""
    gate = asyncio.Semaphore(CONCURRENCY)
    done = 0

    async def limited(item: T) -> Outcome:
        nonlocal done
        async with gate:
            outcome = await one(item)
        done += 1
        return outcome

    async def beat() -> None:
        while True:
            activity.heartbeat(done, len(items))
            await asyncio.sleep(HEARTBEAT_EVERY_S)

    beating = asyncio.create_task(beat())
    try:
        return list(await asyncio.gather(*(limited(item) for item in items)))
    finally:
        beating.cancel()


def _budget_problems(batch: BudgetBatch, rows: dict[str, Enrollment]) -> list[str]:
    problems = [f"{i}: no such enrollment" for i in batch.enrollment_ids if i not in rows]
    for row in rows.values():
        if row.program_code != batch.program_code:
            problems.append(f"{row.id}: belongs to {row.program_code}")
        elif row.state not in AWAITING_BUDGET:
            problems.append(f"{row.id}: is {row.state}, not awaiting budget")
    return problems


def _refusal(
    batch_id: str, actor: Actor, action: str, target: StepTarget, reason: str
) -> audit_chain.AuditEntry:
    """A refused attempt of a batch's, keyed by the batch: written once however often the batch
    runs."""
    return audit_chain.refused_attempt(
        key=f"{batch_id}:{target.enrollment_id}",
        actor=actor,
        action=action,
        enrollment_id=target.enrollment_id,
        workflow_id=target.workflow_id or None,
        state=target.state or None,
        reason=reason,
        detail={"batch": batch_id},
    )


def _masked(inp: EnrollmentInput) -> str:
    return mask(inp.person.nik)


def _conflict(batch: NominationList, inp: EnrollmentInput, holder: str) -> Conflict:
    return Conflict(
        program_code=batch.program_code,
        enrollment_id=inp.enrollment_id,
        nik_masked=_masked(inp),
        held_by_village=holder,
        nominated_by_village=batch.village_code,
        actor=batch.actor,
        batch_id=batch.batch_id,
        occurred_at=dt.datetime.now(dt.UTC),
    )


def _village_of(engine: Engine, enrollment_id: str) -> str | None:
    """The village whose nomination the projection shows for this enrollment."""
    with Session(engine) as session:
        row = session.get(Enrollment, enrollment_id)
        return row.village_code if row else None
