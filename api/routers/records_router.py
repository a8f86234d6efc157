"""What auditors and supervisors read: histories, the audit log, reports, coverage by NIK."""

from __future__ import annotations

import asyncio
import datetime as dt

from fastapi import APIRouter, Query
from sqlmodel import col, select

from api.auth import actor_of, require, visible_enrollment
from api.deps import SessionDep, StateDep
from api.problems import Invalid
from api.routers.programs_router import load_program
from api.schemas import (
    AuditEventOut,
    AuditPage,
    ChainOut,
    CoverageIn,
    CoverageOut,
    CoverageReportOut,
    ReportLineOut,
)
from domain import nik as nik_rules
from models.audit_chain import verify_chain
from models.tables import AuditEvent
from services.history import Timeline, build_history
from services.keys import Principal, Role
from services.reports import GroupBy, coverage_on, coverage_report

router = APIRouter(tags=["records"])


@router.get("/v1/enrollments/{enrollment_id}/history")
async def get_enrollment_history(
    enrollment_id: str,
    state: StateDep,
    principal: Principal = require(Role.AUDITOR, Role.DPMD_VERIFIER),
) -> Timeline:
    """The timeline across periods: decisions (audit log) and engine events (Temporal)."""
    row = await asyncio.to_thread(visible_enrollment, state, principal, enrollment_id)
    return await build_history(await state.temporal(), state.engine, row)


@router.get("/v1/audit/events", dependencies=[require(Role.AUDITOR)])
def list_audit_events(
    session: SessionDep,
    enrollment_id: str | None = Query(default=None, max_length=40),
    actor: str | None = Query(default=None, max_length=80),
    action: str | None = Query(default=None, max_length=40),
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: int | None = Query(
        default=None,
        ge=0,
        le=2**31 - 1,  # the id column is a 32-bit integer on PostgreSQL
        description="next_cursor of the previous page",
    ),
) -> AuditPage:
    """The append-only audit log, oldest first, filterable."""
    query = select(AuditEvent)
    for column, value in (
        (AuditEvent.enrollment_id, enrollment_id),
        (AuditEvent.actor, actor),
        (AuditEvent.action, action),
    ):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(col(AuditEvent.occurred_at) >= _utc(since, "since"))
    if until is not None:
        query = query.where(col(AuditEvent.occurred_at) < _utc(until, "until"))
    if cursor is not None:
        query = query.where(col(AuditEvent.id) > cursor)
    rows = session.exec(query.order_by(col(AuditEvent.id)).limit(limit + 1)).all()
    items = [
        AuditEventOut(
            id=r.id or 0,
            occurred_at=r.occurred_at,
            actor=r.actor,
            actor_id=r.actor_id,
            role=r.role,
            action=r.action,
            enrollment_id=r.enrollment_id,
            workflow_id=r.workflow_id,
            run_id=r.run_id,
            state_before=r.state_before,
            state_after=r.state_after,
            reason=r.reason,
            hash=r.hash,
        )
        for r in rows[:limit]
    ]
    next_cursor = str(items[-1].id) if len(rows) > limit else None
    return AuditPage(items=items, next_cursor=next_cursor)


def _utc(moment: dt.datetime, field: str) -> dt.datetime:
    """The column holds aware UTC times: a time without an offset is taken as UTC."""
    try:
        return moment.astimezone(dt.UTC) if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    except OverflowError:  # 0001-01-01T00:00+14:00 is before year 1 in UTC
        message = "out of range"
        raise Invalid(
            f"{field} is {message}", errors=[{"field": field, "message": message}]
        ) from None


@router.get("/v1/audit/verify", dependencies=[require(Role.AUDITOR)])
def verify_audit_chain(session: SessionDep) -> ChainOut:
    """Recompute the audit log's hash chain; ``first_broken`` is the first row that fails."""
    check = verify_chain(session)
    return ChainOut(ok=check.ok, checked=check.checked, first_broken=check.first_broken)


@router.get(
    "/v1/reports/coverage",
    dependencies=[require(Role.AUDITOR, Role.DPMD_VERIFIER, Role.BUDGET_OFFICER)],
)
def get_coverage_report(
    session: SessionDep,
    program: str = Query(max_length=40),
    group_by: GroupBy = GroupBy.DISTRICT,
) -> CoverageReportOut:
    """Counts and committed premium of a program by district, village, category or state."""
    load_program(session, program)
    lines = coverage_report(session, program_code=program, group_by=group_by)
    return CoverageReportOut(
        program=program,
        group_by=group_by.value,
        lines=[ReportLineOut(**line.__dict__) for line in lines],
        total_enrollments=sum(line.enrollments for line in lines),
        total_premium_idr=sum(line.premium_idr for line in lines),
        total_open_exceptions=sum(line.open_exceptions for line in lines),
    )


@router.post("/v1/coverage")
async def look_up_coverage(
    body: CoverageIn,
    state: StateDep,
    principal: Principal = require(Role.AUDITOR, Role.DPMD_VERIFIER),
) -> CoverageOut:
    """Was this person covered on that day, and by which enrollment. Every lookup is audited:
    who asked, when, of which (masked) NIK, and the answer."""
    number = nik_rules.normalize(body.nik)
    if len(number) != 16 or not number.isdigit():
        raise Invalid("nik must be 16 digits", errors=[{"field": "nik", "message": "16 digits"}])
    key = nik_rules.person_key(number, secret=state.settings.id_secret_bytes())
    found = await asyncio.to_thread(
        coverage_on,
        state.engine,
        person_key=key,
        day=body.on,
        actor=actor_of(principal),
        nik_masked=nik_rules.mask(number),
    )
    if found is None:
        return CoverageOut(covered=False)
    return CoverageOut(
        covered=True,
        enrollment_id=found.id,
        kpj_number=found.kpj_number,
        coverage_start=found.coverage_start,
        coverage_end=found.coverage_end,
    )
