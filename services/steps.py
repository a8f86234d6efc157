"""Human steps on enrollments: one at a time, or many at once as a durable batch.

A single step is an Update to the enrollment's workflow, which writes the step's records itself
(a local activity) before it answers. A batch verification and a budget approval each run as a
batch workflow (``workflows.batches``) whose activity sends the Updates and writes all their
records in one transaction; these functions start it and answer with its result. Either way a
read after the answer shows the step (read your writes). A refused step raises
``StepRefused`` with the workflow's (or the ledger's) own reason, and is audited: Temporal keeps
no trace of an Update its validator refused.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from core.temporal import refusal_of
from domain.records import Actor
from models import audit_chain, ledger
from models.db import session_scope
from models.tables import Enrollment, FundingSource
from workflows.batches import BudgetApprovalWorkflow, VerificationBatchWorkflow
from workflows.enrollment import INVALID_CORRECTION
from workflows.messages import (
    BatchResult,
    BudgetBatch,
    Outcome,
    StepResult,
    StepTarget,
    VerificationBatch,
)

# How long the call that sends one Update may take before the caller is answered "send it
# again" (the step may have been taken; sent again it is refused as already taken).
STEP_RPC_TIMEOUT = dt.timedelta(seconds=60)


class StepRefused(Exception):
    """The workflow (or the budget) refused the step; ``message`` is its reason."""

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context


class StepInvalid(StepRefused):
    """The step's data breaks the domain's rules; ``errors`` says which field and why."""

    def __init__(self, message: str, errors: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.errors = errors


def find_enrollment(engine: Engine, enrollment_id: str) -> Enrollment | None:
    # A read: no write transaction (on SQLite that would queue behind the worker's writes).
    with Session(engine, expire_on_commit=False) as session:
        return session.get(Enrollment, enrollment_id)


async def send_step(client: Client, row: Enrollment, update: Any, step: Any) -> StepResult:
    """One step to one enrollment's workflow, which records it before answering."""
    handle = client.get_workflow_handle(row.workflow_id)
    try:
        result: StepResult = await handle.execute_update(update, step, rpc_timeout=STEP_RPC_TIMEOUT)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type == INVALID_CORRECTION:
            raise StepInvalid(cause.message, [dict(e) for e in cause.details]) from None
        raise StepRefused(refusal_of(err)) from None
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise StepRefused("the enrollment's workflow has ended; no step can be taken") from None
        raise
    return result


def audit_refusal(engine: Engine, actor: Actor, row: Enrollment, action: str, reason: str) -> None:
    """A refused single step, for the audit log."""
    with session_scope(engine) as session:
        audit_chain.append(
            session,
            audit_chain.refused_attempt(
                key=uuid.uuid4().hex,
                actor=actor,
                action=action,
                enrollment_id=row.id,
                workflow_id=row.workflow_id,
                state=row.state,
                reason=reason,
            ),
        )


async def verify_many(
    client: Client,
    engine: Engine,
    *,
    enrollment_ids: list[str],
    actor: Actor,
    approve: bool,
    reason: str,
    task_queue: str,
) -> list[Outcome]:
    """A batch verification: one outcome per id, in order."""
    rows = await asyncio.to_thread(_rows, engine, enrollment_ids)
    targets = [
        StepTarget(i, rows[i].workflow_id, rows[i].state) for i in enrollment_ids if i in rows
    ]
    answered: dict[str, Outcome] = {}
    if targets:
        batch = VerificationBatch(f"verify-{uuid.uuid4().hex}", actor, approve, reason, targets)
        result: BatchResult = await client.execute_workflow(
            VerificationBatchWorkflow.run, batch, id=batch.batch_id, task_queue=task_queue
        )
        answered = {o.enrollment_id: o for o in result.outcomes}
    return [
        answered.get(i) or Outcome(i, ok=False, error="no such enrollment") for i in enrollment_ids
    ]


@dataclass(frozen=True)
class BudgetApprovalResult:
    approval_id: str
    funding_source: str
    committed_idr: int
    remaining_idr: int
    outcomes: list[Outcome]


async def approve_budget(
    client: Client,
    engine: Engine,
    *,
    program_code: str,
    funding_source: str,
    enrollment_ids: list[str],
    actor: Actor,
    task_queue: str,
    reason: str = "",
) -> BudgetApprovalResult:
    """Commit the premium of every listed enrollment for the period, all or nothing; raises
    ``StepRefused`` (with the problems or the shortfall) when nothing was committed."""
    batch = BudgetBatch(
        approval_id=f"approval-{uuid.uuid4().hex}",
        program_code=program_code,
        funding_source=funding_source,
        actor=actor,
        reason=reason,
        enrollment_ids=list(dict.fromkeys(enrollment_ids)),
    )
    result: BatchResult = await client.execute_workflow(
        BudgetApprovalWorkflow.run, batch, id=batch.approval_id, task_queue=task_queue
    )
    if result.refusal is not None:
        context: dict[str, Any] = {"problems": result.problems} if result.problems else {}
        if result.requested_idr:
            context.update(
                requested_idr=result.requested_idr,
                remaining_idr=result.remaining_idr,
                shortfall_idr=result.requested_idr - result.remaining_idr,
            )
        raise StepRefused(result.refusal, **context)
    committed, ceiling = await asyncio.to_thread(
        _source_totals, engine, program_code, funding_source
    )
    return BudgetApprovalResult(
        batch.approval_id, funding_source, committed, ceiling - committed, result.outcomes
    )


def _rows(engine: Engine, enrollment_ids: list[str]) -> dict[str, Enrollment]:
    with Session(engine, expire_on_commit=False) as session:
        return {
            r.id: r
            for r in session.exec(select(Enrollment).where(col(Enrollment.id).in_(enrollment_ids)))
        }


def _source_totals(engine: Engine, program_code: str, code: str) -> tuple[int, int]:
    """What a funding source has committed, and its ceiling."""
    with Session(engine) as session:
        source = session.exec(
            select(FundingSource).where(
                FundingSource.program_code == program_code, FundingSource.code == code
            )
        ).one()
        assert source.id is not None
        return ledger.committed(session, [source.id])[source.id], source.ceiling_idr
