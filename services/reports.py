"""Coverage report: counts and committed premium of a program's enrollments, grouped as asked."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import and_, case, func
from sqlmodel import Session, col, select

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


def coverage_report(session: Session, *, program_code: str, group_by: GroupBy) -> list[ReportLine]:
    """One line per group; premium counts only the open commitments (the ledger), so a premium
    given back (a withdrawal, a failed registration) is not counted."""
    column = {
        GroupBy.DISTRICT: Enrollment.district_code,
        GroupBy.VILLAGE: Enrollment.village_code,
        GroupBy.CATEGORY: Enrollment.category,
        GroupBy.STATE: Enrollment.state,
    }[group_by]
    open_commitment = and_(
        col(Commitment.enrollment_id) == col(Enrollment.id),
        col(Commitment.program_code) == col(Enrollment.program_code),
        col(Commitment.released_at).is_(None),
    )
    rows = session.exec(
        select(
            column,
            func.count(),
            func.sum(case((col(Enrollment.state) == "active", 1), else_=0)),
            func.coalesce(func.sum(Commitment.amount_idr), 0),
        )
        .select_from(Enrollment)
        .outerjoin(Commitment, open_commitment)
        .where(Enrollment.program_code == program_code)
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
        )
        for key, count, n_active, premium in rows
    ]


def _names(session: Session, group_by: GroupBy) -> dict[str, str]:
    if group_by == GroupBy.DISTRICT:
        return {d.code: d.name for d in session.exec(select(District))}
    if group_by == GroupBy.VILLAGE:
        return {v.code: v.name for v in session.exec(select(Village))}
    return {}
