"""Enrollments: list, detail, and the human steps on one enrollment."""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from sqlmodel import col, select

from api.auth import READERS, actor_of, require, visible_enrollment
from api.deps import SessionDep, StateDep
from api.problems import Conflict, Invalid, Unavailable
from api.schemas import (
    EnrollmentOut,
    EnrollmentPage,
    ExceptionResolutionIn,
    RenewalIn,
    ResubmissionIn,
    StepOut,
    TerminationIn,
    VerificationIn,
    WithdrawalIn,
)
from core.logs import get_logger
from core.temporal import NOT_SENT_ERRORS
from domain.categories import Category
from domain.states import State
from models.tables import Enrollment
from services.keys import Principal, Role
from services.steps import StepInvalid, StepRefused, audit_refusal, send_step
from workflows.enrollment import EnrollmentWorkflow
from workflows.messages import (
    ExceptionResolution,
    RenewalConfirmation,
    Resubmission,
    Termination,
    Verification,
    Withdrawal,
)

router = APIRouter(prefix="/v1/enrollments", tags=["enrollments"])
log = get_logger("rentan.api")


async def run_step(
    state: StateDep, principal: Principal, enrollment_id: str, action: str, update: Any, step: Any
) -> StepOut:
    """One step on one enrollment: 404 if not visible, 409 with the workflow's reason if
    refused (and audited), 503 when Temporal did not take it in time."""
    row = await asyncio.to_thread(visible_enrollment, state, principal, enrollment_id)
    try:
        result = await send_step(await state.temporal(), row, update, step)
    except StepRefused as exc:
        await asyncio.to_thread(
            audit_refusal, state.engine, actor_of(principal), row, action, exc.message
        )
        if isinstance(exc, StepInvalid):
            raise Invalid(exc.message, errors=exc.errors, enrollment_id=enrollment_id) from None
        raise Conflict(exc.message, enrollment_id=enrollment_id, state=row.state) from None
    except NOT_SENT_ERRORS as err:
        # Not a refusal: the step may have been taken; sent again it is taken once, or refused
        # as already taken.
        log.warning("step not sent", enrollment_id=enrollment_id, error=type(err).__name__)
        raise Unavailable(
            f"the {action} could not be sent right now; send it again",
            enrollment_id=enrollment_id,
        ) from None
    return StepOut(enrollment_id=result.enrollment_id, state=result.state)


def enrollment_out(row: Enrollment) -> EnrollmentOut:
    return EnrollmentOut(
        id=row.id,
        program=row.program_code,
        village_code=row.village_code,
        district_code=row.district_code,
        category=row.category,
        full_name=row.full_name,
        nik_masked=row.nik_masked,
        state=State(row.state),
        kpj_number=row.kpj_number,
        coverage_start=row.coverage_start,
        coverage_end=row.coverage_end,
        premium_idr=row.premium_idr,
        funding_source=row.funding_source,
        updated_at=row.updated_at,
        attention=row.attention,
    )


def _decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    after: str | None
    try:
        after = base64.urlsafe_b64decode(cursor.encode()).decode()
        if base64.urlsafe_b64encode(after.encode()).decode() != cursor:
            after = None  # loosely decodable garbage is not a cursor we gave out
    except (binascii.Error, UnicodeDecodeError, ValueError):
        after = None
    if after is None or not after.isprintable():  # a NUL would reach PostgreSQL: 500
        raise HTTPException(422, "cursor is not one this API gave out")
    return after


@router.get("")
def list_enrollments(
    session: SessionDep,
    principal: Principal = require(*READERS),
    program: str | None = Query(default=None, max_length=40),
    state: State | None = None,
    village_code: str | None = Query(default=None, max_length=13),
    district_code: str | None = Query(default=None, max_length=8),
    category: Category | None = None,
    attention: bool | None = Query(
        default=None, description="true: only those with an open exception; false: none"
    ),
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=200),
) -> EnrollmentPage:
    """Enrollments from the projection, filtered, in id order; ``next_cursor`` pages on."""
    query = select(Enrollment)
    if principal.role == Role.VILLAGE_OPERATOR:
        # A village operator sees its own village only, whatever filter it sends.
        if village_code not in (None, principal.village_code):
            return EnrollmentPage(items=[], next_cursor=None)
        village_code = principal.village_code
    for column, value in (
        (Enrollment.program_code, program),
        (Enrollment.state, state.value if state else None),
        (Enrollment.village_code, village_code),
        (Enrollment.district_code, district_code),
        (Enrollment.category, category.value if category else None),
    ):
        if value is not None:
            query = query.where(column == value)
    if attention is not None:
        open_exception = col(Enrollment.attention).is_not(None)
        query = query.where(open_exception if attention else ~open_exception)
    after = _decode_cursor(cursor)
    if after is not None:
        query = query.where(col(Enrollment.id) > after)
    rows = session.exec(query.order_by(col(Enrollment.id)).limit(limit + 1)).all()
    items = [enrollment_out(r) for r in rows[:limit]]
    next_cursor = (
        base64.urlsafe_b64encode(rows[limit - 1].id.encode()).decode()
        if len(rows) > limit
        else None
    )
    return EnrollmentPage(items=items, next_cursor=next_cursor)


@router.get("/{enrollment_id}")
def get_enrollment(
    enrollment_id: str, state: StateDep, principal: Principal = require(*READERS)
) -> EnrollmentOut:
    """One enrollment (404 for another village's, to a village operator)."""
    return enrollment_out(visible_enrollment(state, principal, enrollment_id))


@router.post("/{enrollment_id}/verification", responses={409: {"description": "refused"}})
async def verify_enrollment(
    enrollment_id: str,
    body: VerificationIn,
    state: StateDep,
    principal: Principal = require(Role.DPMD_VERIFIER),
) -> StepOut:
    """Verify or reject a nominated enrollment."""
    step = Verification(actor=actor_of(principal), approve=body.approve, reason=body.reason)
    return await run_step(
        state, principal, enrollment_id, "verification", EnrollmentWorkflow.verify, step
    )


@router.post("/{enrollment_id}/withdrawal", responses={409: {"description": "refused"}})
async def withdraw_enrollment(
    enrollment_id: str,
    body: WithdrawalIn,
    state: StateDep,
    principal: Principal = require(Role.VILLAGE_OPERATOR),
) -> StepOut:
    """Withdraw a nomination before activation."""
    step = Withdrawal(actor=actor_of(principal), reason=body.reason)
    return await run_step(
        state, principal, enrollment_id, "withdrawal", EnrollmentWorkflow.withdraw, step
    )


@router.post("/{enrollment_id}/termination", responses={409: {"description": "refused"}})
async def terminate_enrollment(
    enrollment_id: str,
    body: TerminationIn,
    state: StateDep,
    principal: Principal = require(Role.DPMD_VERIFIER),
) -> StepOut:
    """End coverage (death, left office, moved, other) from an effective date."""
    step = Termination(
        actor=actor_of(principal),
        reason=body.reason,
        effective_date=body.effective_date,
        note=body.note,
    )
    return await run_step(
        state, principal, enrollment_id, "termination", EnrollmentWorkflow.terminate, step
    )


@router.post("/{enrollment_id}/renewal", responses={409: {"description": "refused"}})
async def confirm_renewal(
    enrollment_id: str,
    body: RenewalIn,
    state: StateDep,
    principal: Principal = require(Role.VILLAGE_OPERATOR),
) -> StepOut:
    """Confirm (or decline) that the person still serves and should be covered next period."""
    step = RenewalConfirmation(actor=actor_of(principal), confirm=body.confirm, reason=body.reason)
    return await run_step(
        state, principal, enrollment_id, "renewal", EnrollmentWorkflow.confirm_renewal, step
    )


@router.post(
    "/{enrollment_id}/resubmission",
    responses={409: {"description": "refused"}, 422: {"description": "a correction is invalid"}},
)
async def resubmit_enrollment(
    enrollment_id: str,
    body: ResubmissionIn,
    state: StateDep,
    principal: Principal = require(Role.DPMD_VERIFIER),
) -> StepOut:
    """Register a failed enrollment again with corrected data."""
    step = Resubmission(
        actor=actor_of(principal),
        reason=body.reason,
        full_name=body.corrections.full_name,
        birth_date=body.corrections.birth_date,
        gender=body.corrections.gender,
    )
    return await run_step(
        state, principal, enrollment_id, "resubmission", EnrollmentWorkflow.resubmit, step
    )


@router.post("/{enrollment_id}/exception-resolution", responses={409: {"description": "refused"}})
async def resolve_exception(
    enrollment_id: str,
    body: ExceptionResolutionIn,
    state: StateDep,
    principal: Principal = require(Role.DPMD_VERIFIER),
) -> StepOut:
    """Resolve an open exception (``attention``): tell BPJS again, or close it as settled."""
    step = ExceptionResolution(actor=actor_of(principal), retry=body.retry, note=body.note)
    return await run_step(
        state,
        principal,
        enrollment_id,
        "exception_resolution",
        EnrollmentWorkflow.resolve_exception,
        step,
    )
