"""Human steps on enrollments, sent to their workflows as Updates (API and demo share these).

Each answers with the enrollment's state once its workflow accepted the step, or raises
``StepRefused`` with the workflow's own reason. Budget approval is all or nothing: the whole
batch is committed against the funding source's ceiling in one transaction before any
workflow hears of it; an enrollment whose workflow then refuses gets its share released, and
the call answers once the projection shows the approvals (``until_projected``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities import audit, budget
from activities.projection import apply_transition
from domain.states import State
from models.db import session_scope
from models.tables import Enrollment, FundingSource
from rentan.logs import get_logger
from rentan.temporal import NOT_SENT_ERRORS
from workflows.enrollment import EnrollmentWorkflow
from workflows.messages import (
    Actor,
    BudgetCommitment,
    StepResult,
    Transition,
    Verification,
    Withdrawal,
)

log = get_logger("rentan.steps")
STEP_CONCURRENCY = 32
# How long a budget approval waits for the projection to show its steps before it answers anyway.
PROJECTION_WAIT_S = 10.0
# How long the call that sends one Update may take: past it the step is answered "send it
# again" (``NOT_SENT``) instead of holding the caller. The SDK's deadline bounds that call, not
# its later polls for the outcome: a handler accepted but held up (a local activity waiting on
# a locked database) still holds its caller. Far above a loaded server's answer (a bare
# Update's p99 is tens of milliseconds in the bench).
STEP_RPC_TIMEOUT = dt.timedelta(seconds=60)


# The answer for an Update that did not get through (``rentan.temporal.NOT_SENT_ERRORS``).
NOT_SENT = "could not be sent right now; send it again"
NOT_SENT_BUDGET = NOT_SENT + " (its premium stays committed meanwhile)"
# An approval taken by its workflow whose record this call could not write.
NOT_RECORDED = "taken but could not be recorded right now; send it again"
# Answers that are no refusal: the step may have been taken, nothing to audit as refused.
NOT_REFUSALS = frozenset({NOT_SENT, NOT_SENT_BUDGET, NOT_RECORDED})


def log_not_sent(enrollment_id: str, err: Exception) -> None:
    # A timed-out Update's exception has no text: its type says what happened.
    log.warning(
        "step not sent", enrollment_id=enrollment_id, error=str(err)[:200] or type(err).__name__
    )


class StepRefused(Exception):
    """The workflow (or the budget) refused the step; ``message`` is its reason."""

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context


class EnrollmentNotFound(LookupError):
    pass


def find_enrollment(session: Session, enrollment_id: str) -> Enrollment:
    row = session.get(Enrollment, enrollment_id)
    if row is None:
        raise EnrollmentNotFound(enrollment_id)
    return row


def seen_at(arg: Any, row: Enrollment) -> Any:
    """The step, saying which row its caller found the enrollment by, where the step carries
    that (``Verification``, ``Withdrawal``): the workflow then knows its nomination's row exists
    and leaves writing it (``EnrollmentWorkflow._row_found``).

    An approval is left to its caller to write only while the row shows the enrollment
    nominated: one the projection shows verified already goes to the workflow as a plain
    approval, which refuses it ("already verified"). Sent again after a lost answer (the
    workflow verified, the row still nominated) it hands the record over again."""
    if (
        isinstance(arg, Verification)
        and arg.recorded_by_caller
        and row.state != State.NOMINATED.value
    ):
        arg = replace(arg, recorded_by_caller=False)
    if isinstance(arg, Verification | Withdrawal) and arg.projected_seq == 0:
        return replace(arg, projected_seq=row.seq)
    return arg


async def send_step(client: Client, workflow_id: str, update: Any, arg: Any) -> StepResult:
    """Run one Update and translate a refusal into ``StepRefused``."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        result: StepResult = await handle.execute_update(update, arg, rpc_timeout=STEP_RPC_TIMEOUT)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        raise StepRefused(
            cause.message if isinstance(cause, ApplicationError) else str(cause)
        ) from None
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise StepRefused("the enrollment's workflow has ended; no step can be taken") from None
        raise
    return result


@dataclass(frozen=True)
class StepOutcome:
    enrollment_id: str
    ok: bool
    state: str | None = None
    error: str | None = None
    seq: int = 0
    # What the workflow left for this call to write (``verify_many``).
    to_record: tuple[Transition, ...] = ()


async def send_many(
    client: Client,
    engine: Engine,
    enrollment_ids: list[str],
    update: Any,
    arg: Any,
) -> list[StepOutcome]:
    """The same step for many enrollments, concurrently; one outcome per id, in order."""
    with Session(engine) as session:
        rows = {
            r.id: r
            for r in session.exec(select(Enrollment).where(col(Enrollment.id).in_(enrollment_ids)))
        }
    limit = asyncio.Semaphore(STEP_CONCURRENCY)

    async def one(enrollment_id: str) -> StepOutcome:
        row = rows.get(enrollment_id)
        if row is None:
            return StepOutcome(enrollment_id, ok=False, error="no such enrollment")
        async with limit:
            try:
                result = await send_step(client, row.workflow_id, update, seen_at(arg, row))
            except StepRefused as exc:
                return StepOutcome(enrollment_id, ok=False, error=exc.message)
            except NOT_SENT_ERRORS as err:
                # One Update that could not be sent (Temporal restarting, a timeout) fails its
                # own id, not the batch: the others' steps are taken and their answers count.
                log_not_sent(enrollment_id, err)
                return StepOutcome(enrollment_id, ok=False, error=NOT_SENT)
        return StepOutcome(
            enrollment_id,
            ok=True,
            state=result.state,
            seq=result.seq,
            to_record=tuple(result.to_record),
        )

    return list(await asyncio.gather(*(one(i) for i in enrollment_ids)))


async def verify_many(
    client: Client, engine: Engine, enrollment_ids: list[str], step: Verification
) -> list[StepOutcome]:
    """Batch verification: the approvals' records are written here, in one transaction.

    Each workflow takes its approval at once and hands its record back (``to_record``); this
    call writes them all together before it answers, so a read after the answer sees them
    (read your writes), at a fraction of one local activity's cost each (BENCHMARKS.md).
    Should the write fail, the steps are taken but the projection still shows them
    nominated: sending the same approval again (batch or single) hands the records over
    again, and a withdrawal carries them with its own. Only enrollments the projection shows
    nominated are approved this way (``seen_at``). Rejections end their workflows and are
    written by them.
    """
    as_caller = replace(step, recorded_by_caller=step.approve)
    outcomes = await send_many(client, engine, enrollment_ids, EnrollmentWorkflow.verify, as_caller)
    transitions = [t for o in outcomes for t in o.to_record]
    if transitions:
        try:
            await asyncio.to_thread(record_steps, engine, transitions)
        except SQLAlchemyError as exc:
            # The steps are taken (the workflows keep the records) but not shown: each such id
            # is answered "send it again", which hands its record over again and writes it.
            log.warning("approvals not recorded", ids=len(transitions), error=type(exc).__name__)
            return [
                replace(o, ok=False, error=NOT_RECORDED, to_record=()) if o.to_record else o
                for o in outcomes
            ]
    return outcomes


def record_steps(engine: Engine, transitions: list[Transition]) -> None:
    """Write steps the workflows left to their caller; idempotent, as every projection write."""
    with session_scope(engine) as session:
        # The audit chain's lock first, as the worker's writer takes it: on PostgreSQL a write
        # holding an enrollment's row while waiting for the chain would deadlock against it.
        audit.lock_chain(session)
        for transition in transitions:
            apply_transition(session, transition)


async def until_projected(engine: Engine, seqs: dict[str, int]) -> None:
    """Read your writes (API.md): wait until each enrollment's row has reached its ``seq``.

    A budget approval's Update answers before its record is written: the registration activity
    writes it, just before it calls BPJS (``EnrollmentWorkflow.approve_budget``). The call
    answers once the projection shows it, or after ``PROJECTION_WAIT_S`` with a warning (the
    step is taken; the projection follows as soon as a worker writes it).
    """
    waiting = {enrollment_id: seq for enrollment_id, seq in seqs.items() if seq > 0}
    deadline = time.monotonic() + PROJECTION_WAIT_S
    pause = 0.005
    while waiting:
        reached = await asyncio.to_thread(_projected_seqs, engine, list(waiting))
        waiting = {i: seq for i, seq in waiting.items() if reached.get(i, 0) < seq}
        if not waiting:
            return
        if time.monotonic() >= deadline:
            log.warning(
                "projection behind the workflows",
                enrollments=len(waiting),
                example=next(iter(waiting)),
                waited_s=PROJECTION_WAIT_S,
            )
            return
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.1)


def _projected_seqs(engine: Engine, enrollment_ids: list[str]) -> dict[str, int]:
    with Session(engine) as session:
        rows = session.exec(
            select(Enrollment.id, Enrollment.seq).where(col(Enrollment.id).in_(enrollment_ids))
        )
        return {enrollment_id: seq for enrollment_id, seq in rows}


@dataclass(frozen=True)
class BudgetApproval:
    funding_source: str
    committed_idr: int
    remaining_idr: int
    outcomes: list[StepOutcome]


@dataclass(frozen=True)
class _Claimed:
    """What the ledger transaction committed for one enrollment, and where to tell it."""

    premium_idr: int
    workflow_id: str
    projected_seq: int  # the row's seq in the ledger transaction: steps up to it are projected


def _commit_batch(
    engine: Engine,
    *,
    program_code: str,
    funding_source: str,
    enrollment_ids: list[str],
    actor: Actor,
) -> tuple[dict[str, _Claimed], set[str]]:
    """The all-or-nothing ledger transaction: each enrollment's claim, and which were new."""
    awaiting = (State.VERIFIED.value, State.RENEWAL_PENDING.value)
    with session_scope(engine) as session:
        rows = list(
            session.exec(select(Enrollment).where(col(Enrollment.id).in_(enrollment_ids))).all()
        )
        found = {r.id for r in rows}
        problems = [f"{i}: no such enrollment" for i in enrollment_ids if i not in found]
        problems += [
            f"{r.id}: belongs to {r.program_code}" for r in rows if r.program_code != program_code
        ]
        problems += [
            f"{r.id}: is {r.state}, not awaiting budget" for r in rows if r.state not in awaiting
        ]
        if problems:
            raise StepRefused("nothing committed: " + "; ".join(problems[:20]), problems=problems)
        # Only what this call commits may be given back if a workflow refuses: an enrollment
        # that already held budget (a second approval) keeps its first commitment.
        holding = budget.held(
            session, enrollment_ids=[r.id for r in rows], program_code=program_code
        )
        fresh = {r.id for r in rows if r.id not in holding}
        try:
            budget.commit(
                session,
                program_code=program_code,
                source_code=funding_source,
                claims=[budget.Claim(r.id, r.category, r.premium_idr) for r in rows],
                actor=actor.name,
            )
        except budget.CeilingExceeded as exc:
            raise StepRefused(
                str(exc),
                requested_idr=exc.requested,
                remaining_idr=exc.remaining,
                shortfall_idr=exc.shortfall,
            ) from None
        except budget.BudgetError as exc:
            raise StepRefused(str(exc)) from None
        return {r.id: _Claimed(r.premium_idr, r.workflow_id, r.seq) for r in rows}, fresh


async def approve_budget(
    client: Client,
    engine: Engine,
    *,
    program_code: str,
    funding_source: str,
    enrollment_ids: list[str],
    actor: Actor,
    reason: str = "",
) -> BudgetApproval:
    """Commit the premium of every listed enrollment for the period, all or nothing."""
    # The ledger transaction may wait for the source's row lock: off the event loop, so the
    # API keeps answering meanwhile.
    claims, fresh = await asyncio.to_thread(
        _commit_batch,
        engine,
        program_code=program_code,
        funding_source=funding_source,
        enrollment_ids=enrollment_ids,
        actor=actor,
    )
    limit = asyncio.Semaphore(STEP_CONCURRENCY)

    async def one(enrollment_id: str, claim: _Claimed) -> StepOutcome:
        async with limit:
            return await _commit_one(
                client,
                engine,
                enrollment_id,
                claim,
                program_code,
                funding_source,
                actor,
                reason,
                release_on_refusal=enrollment_id in fresh,
            )

    outcomes = await asyncio.gather(*(one(i, c) for i, c in claims.items()))
    await until_projected(engine, {o.enrollment_id: o.seq for o in outcomes if o.ok})
    with Session(engine) as session:
        source = session.exec(
            select(FundingSource).where(
                FundingSource.program_code == program_code, FundingSource.code == funding_source
            )
        ).one()
        return BudgetApproval(
            funding_source=funding_source,
            committed_idr=source.committed_idr,
            remaining_idr=source.ceiling_idr - source.committed_idr,
            outcomes=list(outcomes),
        )


async def _commit_one(
    client: Client,
    engine: Engine,
    enrollment_id: str,
    claim: _Claimed,
    program_code: str,
    funding_source: str,
    actor: Actor,
    reason: str,
    *,
    release_on_refusal: bool,
) -> StepOutcome:
    step = BudgetCommitment(
        actor=actor,
        program_code=program_code,
        funding_source=funding_source,
        amount_idr=claim.premium_idr,
        reason=reason,
        projected_seq=claim.projected_seq,
    )
    try:
        result = await send_step(client, claim.workflow_id, EnrollmentWorkflow.approve_budget, step)
    except StepRefused as exc:
        # The workflow moved on since the check (withdrawn meanwhile): give its share back.
        if release_on_refusal:
            with session_scope(engine) as session:
                budget.release(
                    session,
                    enrollment_id=enrollment_id,
                    program_code=program_code,
                    actor=actor.name,
                )
        return StepOutcome(enrollment_id, ok=False, error=exc.message)
    except NOT_SENT_ERRORS as err:
        # The workflow may have taken the approval or not: its premium stays committed (never
        # spent twice: a second approval of a holder commits nothing more), and the same
        # approval sent again reaches the workflow or is refused as no longer awaiting budget.
        log_not_sent(enrollment_id, err)
        return StepOutcome(enrollment_id, ok=False, error=NOT_SENT_BUDGET)
    return StepOutcome(enrollment_id, ok=True, state=result.state, seq=result.seq)
