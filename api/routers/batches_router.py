"""Steps on many enrollments of a program at once: batch verification and budget approval.

Each runs as a durable batch workflow (``services.steps``); the call waits for it and answers
per enrollment.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from api.auth import actor_of, require
from api.deps import StateDep
from api.problems import Conflict, Unavailable
from api.routers.programs_router import load_program
from api.schemas import (
    BatchOut,
    BatchVerificationIn,
    BudgetApprovalIn,
    BudgetApprovalOut,
    Selection,
    StepResultOut,
)
from core.temporal import NOT_SENT_ERRORS
from domain.states import State
from models.tables import Commitment, Enrollment
from services.keys import Principal, Role
from services.steps import StepRefused, approve_budget, verify_many
from workflows.messages import Outcome

router = APIRouter(prefix="/v1/programs/{code}", tags=["batches"])
NOT_SENT = "could not be sent right now; send it again"


def _selected(engine: Engine, code: str, selection: Selection, states: list[str]) -> list[str]:
    """The listed ids (de-duplicated, order kept), or the village's enrollments in ``states``
    that no approval holds budget for; 404 for an unknown program. A read run off the event
    loop (``asyncio.to_thread``)."""
    with Session(engine) as session:
        load_program(session, code)
        return _selection(session, code, selection, states)


def _selection(session: Session, code: str, selection: Selection, states: list[str]) -> list[str]:
    if selection.enrollment_ids is not None:
        return list(dict.fromkeys(selection.enrollment_ids))
    funded = select(Commitment.enrollment_id).where(
        Commitment.program_code == code, col(Commitment.released_at).is_(None)
    )
    rows = session.exec(
        select(Enrollment.id)
        .where(
            Enrollment.program_code == code,
            Enrollment.village_code == selection.village_code,
            col(Enrollment.state).in_(states),
            col(Enrollment.id).not_in(funded),
        )
        .order_by(col(Enrollment.id))
    ).all()
    return list(rows)


def _results(outcomes: list[Outcome]) -> list[StepResultOut]:
    return [
        StepResultOut(enrollment_id=o.enrollment_id, ok=o.ok, state=o.state, error=o.error)
        for o in outcomes
    ]


@router.post("/verifications", responses={503: {"description": "Temporal did not take it"}})
async def verify_batch(
    code: str,
    body: BatchVerificationIn,
    state: StateDep,
    principal: Principal = require(Role.DPMD_VERIFIER),
) -> BatchOut:
    """Verify or reject listed enrollments, or a village's nominated ones; a result per id."""
    ids = await asyncio.to_thread(_selected, state.engine, code, body, [State.NOMINATED.value])
    try:
        outcomes = await verify_many(
            await state.temporal(),
            state.engine,
            enrollment_ids=ids,
            actor=actor_of(principal),
            approve=body.approve,
            reason=body.reason,
            task_queue=state.settings.task_queue,
        )
    except NOT_SENT_ERRORS:
        raise Unavailable(f"the batch {NOT_SENT}") from None
    return BatchOut(results=_results(outcomes))


@router.post(
    "/budget-approvals",
    responses={
        409: {"description": "nothing committed"},
        503: {"description": "Temporal did not take it"},
    },
)
async def approve_budget_batch(
    code: str,
    body: BudgetApprovalIn,
    state: StateDep,
    principal: Principal = require(Role.BUDGET_OFFICER),
) -> BudgetApprovalOut:
    """Commit the premium of every selected verified enrollment, all or nothing."""
    awaiting = [State.VERIFIED.value, State.RENEWAL_PENDING.value]
    ids = await asyncio.to_thread(_selected, state.engine, code, body, awaiting)
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
            task_queue=state.settings.task_queue,
            reason=body.reason,
        )
    except StepRefused as exc:
        raise Conflict(exc.message, **exc.context) from None
    except NOT_SENT_ERRORS:
        raise Unavailable(f"the approval {NOT_SENT}") from None
    return BudgetApprovalOut(
        funding_source=approval.funding_source,
        committed_idr=approval.committed_idr,
        remaining_idr=approval.remaining_idr,
        results=_results(approval.outcomes),
    )
