"""Running a human step from the API: scope checks, the Update, and the audit of a refusal.

Temporal keeps no trace of an Update its validator rejected, so a refused attempt is written to
the audit log here: who tried what, on which enrollment, and the workflow's reason.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from dataclasses import replace
from typing import Any

from fastapi import HTTPException
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from activities import audit
from api.errors import Conflict, Unavailable
from api.state import AppState
from models.db import session_scope
from models.tables import Enrollment
from rentan.keys import Principal, Role
from rentan.logs import get_logger
from rentan.steps import (
    NOT_RECORDED,
    NOT_REFUSALS,
    NOT_SENT,
    StepOutcome,
    StepRefused,
    log_not_sent,
    record_steps,
    seen_at,
    send_step,
)
from rentan.temporal import NOT_SENT_ERRORS
from workflows.enrollment import EnrollmentWorkflow
from workflows.messages import Actor, StepResult, Verification

log = get_logger("rentan.api")


def actor_of(principal: Principal) -> Actor:
    return Actor(
        name=principal.name, role=principal.role.value, village_code=principal.village_code
    )


def load_enrollment(state: AppState, principal: Principal, enrollment_id: str) -> Enrollment:
    """The enrollment, or 404 — also when a village operator asks for another village's."""
    # A read: no write transaction (on SQLite that would queue behind the worker's writes).
    with Session(state.engine, expire_on_commit=False) as session:
        row = session.get(Enrollment, enrollment_id)
    if row is None or (
        principal.role == Role.VILLAGE_OPERATOR and row.village_code != principal.village_code
    ):
        raise HTTPException(404, f"enrollment {enrollment_id} not found")
    return row


def record_refusal(
    state: AppState, principal: Principal, row: Enrollment, action: str, reason: str
) -> None:
    with session_scope(state.engine) as session:
        audit.append(
            session,
            audit.AuditEntry(
                event_key=f"refused:{uuid.uuid4().hex}",
                occurred_at=dt.datetime.now(dt.UTC),
                actor=principal.name,
                role=principal.role.value,
                action=f"refused_{action}",
                enrollment_id=row.id,
                workflow_id=row.workflow_id,
                state_before=row.state,
                state_after=row.state,
                reason=reason,
            ),
        )


async def run_step(
    state: AppState,
    principal: Principal,
    enrollment_id: str,
    action: str,
    update: Any,
    arg: Any,
) -> StepResult:
    """One step on one enrollment: 404 if not visible, 409 with the workflow's reason if refused."""
    row = load_enrollment(state, principal, enrollment_id)
    return await _send(state, principal, row, action, update, arg)


async def run_verification(
    state: AppState, principal: Principal, enrollment_id: str, step: Verification
) -> StepResult:
    """A single verification. An approval of an enrollment the projection shows nominated is
    written by this call, as a batch's are (``rentan.steps.verify_many``): the workflow takes
    it without a local activity and hands the record back, which is written before the answer
    (read your writes). Half the time of a verification in the bench went to that local
    activity (BENCHMARKS.md, item 36). Otherwise (already verified, a rejection) the workflow
    decides and writes, as before: a second approval is refused with 409."""
    row = load_enrollment(state, principal, enrollment_id)
    # Only while the row shows it nominated (``rentan.steps.seen_at``).
    step = replace(step, recorded_by_caller=step.approve)
    result = await _send(state, principal, row, "verification", EnrollmentWorkflow.verify, step)
    if result.to_record:
        try:
            await asyncio.to_thread(record_steps, state.engine, list(result.to_record))
        except SQLAlchemyError as exc:
            # The step is taken (the workflow keeps it for its next write) but not yet shown:
            # the same approval sent again hands the record over again and writes it.
            log.warning(
                "verification not recorded", enrollment_id=enrollment_id, error=type(exc).__name__
            )
            raise Unavailable(
                f"the verification is {NOT_RECORDED}",
                enrollment_id=enrollment_id,
            ) from None
    return result


async def _send(
    state: AppState, principal: Principal, row: Enrollment, action: str, update: Any, arg: Any
) -> StepResult:
    enrollment_id = row.id
    client = await state.temporal()
    try:
        return await send_step(client, row.workflow_id, update, seen_at(arg, row))
    except StepRefused as exc:
        record_refusal(state, principal, row, action, exc.message)
        raise Conflict(exc.message, enrollment_id=enrollment_id, state=row.state) from None
    except NOT_SENT_ERRORS as err:
        # Not a refusal (nothing to audit): Temporal did not answer in time, or not at all. The
        # step may have been taken; sent again, it is taken once or refused as already taken.
        log_not_sent(enrollment_id, err)
        raise Unavailable(
            f"the {action.replace('_', ' ')} {NOT_SENT}", enrollment_id=enrollment_id
        ) from None


def audit_refused_outcomes(
    state: AppState, principal: Principal, action: str, outcomes: list[StepOutcome]
) -> None:
    # A step answered "send it again" may have been taken: it is not written as refused.
    refused = [o for o in outcomes if not o.ok and o.error not in NOT_REFUSALS]
    if not refused:
        return
    with Session(state.engine, expire_on_commit=False) as session:
        rows = {o.enrollment_id: session.get(Enrollment, o.enrollment_id) for o in refused}
    for outcome in refused:
        row = rows.get(outcome.enrollment_id)
        if row is not None:
            record_refusal(state, principal, row, action, outcome.error or "refused")
