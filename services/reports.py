"""Coverage report: counts and committed premium of a program's enrollments, grouped as asked."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import and_, case, func
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from domain.records import Actor
from models import audit_chain
from models.db import session_scope
from models.tables import Commitment, District, Enrollment, Village


class GroupBy(StrEnum):
    DISTRICT = "district"
    VILLAGE = "village"
    CATEGORY = "category"
    STATE = "state"


@dataclass(frozen=True)
class ReportLine:
    key: str
    name: str
    enrollments: int
    active: int
    premium_idr: int
    # Exceptions DPMD has yet to resolve (a termination BPJS refused).
    open_exceptions: int


def coverage_report(session: Session, *, program_code: str, group_by: GroupBy) -> list[ReportLine]:
    """One line per group; premium counts only the open commitments (the ledger), so a premium
    given back (a withdrawal, a failed registration) is not counted."""
    column = {
        GroupBy.DISTRICT: col(Enrollment.district_code),
        GroupBy.VILLAGE: col(Enrollment.village_code),
        GroupBy.CATEGORY: col(Enrollment.category),
        GroupBy.STATE: col(Enrollment.state),
    }[group_by]
    open_commitment = and_(
        col(Commitment.enrollment_id) == col(Enrollment.id),
        col(Commitment.program_code) == col(Enrollment.program_code),
        col(Commitment.released_at).is_(None),
    )
    # Five columns: more than sqlmodel's select is typed for; SQLAlchemy's own.
    rows = session.execute(
        sa_select(
            column,
            func.count(),
            func.sum(case((col(Enrollment.state) == "active", 1), else_=0)),
            func.sum(case((col(Enrollment.attention).is_not(None), 1), else_=0)),
            func.coalesce(func.sum(Commitment.amount_idr), 0),
        )
        .select_from(Enrollment)
        .outerjoin(Commitment, open_commitment)
        .where(col(Enrollment.program_code) == program_code)
        .group_by(column)
        .order_by(column)
    ).all()
    names = _names(session, group_by)
    return [
        ReportLine(
            key=str(key),
            name=names.get(str(key), str(key)),
            enrollments=int(count),
            active=int(n_active or 0),
            premium_idr=int(premium or 0),
            open_exceptions=int(n_exceptions or 0),
        )
        for key, count, n_active, n_exceptions, premium in rows
    ]


def coverage_on(
    engine: Engine, *, person_key: str, day: dt.date, actor: Actor, nik_masked: str
) -> Enrollment | None:
    """The enrollment covering a person on ``day``, if any; the lookup itself is audited (who
    asked of whom, and what they learnt), in the same transaction."""
    with session_scope(engine) as session:
        found = session.exec(
            select(Enrollment)
            .where(
                Enrollment.person_key == person_key,
                col(Enrollment.kpj_number).is_not(None),
                col(Enrollment.coverage_start) <= day,
                col(Enrollment.coverage_end) >= day,
            )
            .order_by(col(Enrollment.coverage_start).desc())
        ).first()
        audit_chain.append(
            session,
            audit_chain.AuditEntry(
                event_key=f"coverage:{uuid.uuid4().hex}",
                occurred_at=dt.datetime.now(dt.UTC),
                actor=actor.name,
                actor_id=actor.id,
                role=actor.role,
                action="coverage_lookup",
                enrollment_id=found.id if found else None,
                reason=f"coverage of {nik_masked} on {day.isoformat()}",
                detail={"nik_masked": nik_masked, "on": day.isoformat(), "covered": bool(found)},
            ),
        )
        return found


def _names(session: Session, group_by: GroupBy) -> dict[str, str]:
    if group_by == GroupBy.DISTRICT:
        return {d.code: d.name for d in session.exec(select(District))}
    if group_by == GroupBy.VILLAGE:
        return {v.code: v.name for v in session.exec(select(Village))}
    return {}
