"""Coverage report: counts and premium of a program's enrollments, grouped as asked."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import case, func
from sqlmodel import Session, col, select

from models.tables import District, Enrollment, Village


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
    """One line per group; premium counts only enrollments whose budget is committed."""
    column = {
        GroupBy.DISTRICT: Enrollment.district_code,
        GroupBy.VILLAGE: Enrollment.village_code,
        GroupBy.CATEGORY: Enrollment.category,
        GroupBy.STATE: Enrollment.state,
    }[group_by]
    funded = Enrollment.funding_source.is_not(None)  # type: ignore[union-attr]
    rows = session.exec(
        select(
            column,
            func.count(),
            func.sum(case((col(Enrollment.state) == "active", 1), else_=0)),
            func.sum(case((funded, Enrollment.premium_idr), else_=0)),
        )
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
