"""Steps on many enrollments of a program at once: batch verification and budget approval."""

from __future__ import annotations

from fastapi import APIRouter
from sqlmodel import col, select

from api.auth import require
from api.deps import SessionDep, StateDep, end_read
from api.errors import Conflict
from api.routes.programs import load_program
from api.schemas import (
    BatchOut,
    BatchVerificationIn,
    BudgetApprovalIn,
    BudgetApprovalOut,
    Selection,
    StepResultOut,
)
from api.steps import actor_of, audit_refused_outcomes
from domain.states import State
from models.tables import Enrollment
from rentan.keys import Principal, Role
from rentan.steps import StepOutcome, StepRefused, approve_budget, verify_many
from workflows.messages import Verification

router = APIRouter(prefix="/v1/programs/{code}", tags=["batches"])


def _selected(
    session: SessionDep, code: str, selection: Selection, awaiting: list[str]
) -> list[str]:
    if selection.enrollment_ids is not None:
        return list(dict.fromkeys(selection.enrollment_ids))  # de-duplicated, order kept
    rows = session.exec(
        select(Enrollment.id)
        .where(
            Enrollment.program_code == code,
            Enrollment.village_code == selection.village_code,
            col(Enrollment.state).in_(awaiting),
        )
        .order_by(col(Enrollment.id))
    ).all()
    return list(rows)


def _results(outcomes: list[StepOutcome]) -> list[StepResultOut]:
    return [
        StepResultOut(enrollment_id=o.enrollment_id, ok=o.ok, state=o.state, error=o.error)
        for o in outcomes
    ]


@router.post("/verifications")
async def verify_batch(
    code: str,
    body: BatchVerificationIn,
    state: StateDep,
    session: SessionDep,
    principal: Principal = require(Role.DPMD_VERIFIER),
) -> BatchOut:
    """Verify or reject listed enrollments, or a village's nominated ones; a result per id.

    The approvals' records are written by this call, together, before it answers
    (``rentan.steps.verify_many``). An approval of one the projection still shows nominated
    answers ``ok`` if its workflow had taken it (a lost answer: it hands the record over); one
    the projection shows verified is refused."""
    load_program(session, code)
    ids = _selected(session, code, body, [State.NOMINATED.value])
    end_read(session)
    step = Verification(actor=actor_of(principal), approve=body.approve, reason=body.reason)
    outcomes = await verify_many(await state.temporal(), state.engine, ids, step)
    audit_refused_outcomes(state, principal, "verification", outcomes)
    return BatchOut(results=_results(outcomes))


@router.post("/budget-approvals", responses={409: {"description": "nothing committed"}})
async def approve_budget_batch(
    code: str,
    body: BudgetApprovalIn,
    state: StateDep,
    session: SessionDep,
    principal: Principal = require(Role.BUDGET_OFFICER),
) -> BudgetApprovalOut:
    """Commit the premium of every selected verified enrollment, all or nothing."""
    load_program(session, code)
    ids = _selected(session, code, body, [State.VERIFIED.value, State.RENEWAL_PENDING.value])
    end_read(session)
    if not ids:
        raise Conflict(f"no enrollment of village {body.village_code} awaits budget in {code}")
    try:
        approval = await approve_budget(
            await state.temporal(),
            state.engine,
            program_code=code,
            funding_source=body.funding_source,
            enrollment_ids=ids,
            actor=actor_of(principal),
            reason=body.reason,
        )
    except StepRefused as exc:
        # All or nothing: each selected enrollment was refused, and the audit log says so.
        refused = [StepOutcome(i, ok=False, error=exc.message) for i in ids]
        audit_refused_outcomes(state, principal, "budget_approval", refused)
        raise Conflict(exc.message, **exc.context) from None
    audit_refused_outcomes(state, principal, "budget_approval", approval.outcomes)
    return BudgetApprovalOut(
        funding_source=approval.funding_source,
        committed_idr=approval.committed_idr,
        remaining_idr=approval.remaining_idr,
        results=_results(approval.outcomes),
    )
