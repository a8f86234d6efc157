"""Programs and their funding sources: created by an admin, read by everyone."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from domain.categories import Category
from models import ledger
from models.db import session_scope
from models.tables import FundingSource, Program


class ProgramError(Exception):
    """A program cannot be created as asked (the message says which field and why)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class FundingSourceSpec:
    code: str
    name: str
    ceiling_idr: int
    categories: list[str]


@dataclass(frozen=True)
class ProgramSpec:
    code: str
    name: str
    period_start: dt.date
    period_end: dt.date
    max_age: int = 60
    renewal_lead_days: int = 30
    successor: str | None = None
    verification_reminder_days: int = 7
    verification_deadline_days: int = 14
    verification_expiry_days: int | None = None
    funding_sources: list[FundingSourceSpec] = field(default_factory=list)


def create_program(engine: Engine, spec: ProgramSpec) -> Program:
    """Create a program with its funding sources; refuses an existing code or bad terms."""
    if spec.period_end < spec.period_start:
        raise ProgramError("period_end", "must not be before period_start")
    if not 0 < spec.renewal_lead_days < (spec.period_end - spec.period_start).days + 1:
        raise ProgramError("renewal_lead_days", "must be positive and shorter than the period")
    known = {c.value for c in Category}
    codes = [s.code for s in spec.funding_sources]
    if len(codes) != len(set(codes)):
        raise ProgramError("funding_sources", "funding source codes must be unique")
    for index, source in enumerate(spec.funding_sources):
        unknown = sorted(set(source.categories) - known)
        if unknown:
            raise ProgramError(
                f"funding_sources[{index}].categories", f"unknown: {', '.join(unknown)}"
            )
        if source.ceiling_idr < 0:
            raise ProgramError(f"funding_sources[{index}].ceiling_idr", "must not be negative")
    with session_scope(engine) as session:
        if session.get(Program, spec.code) is not None:
            raise ProgramError("code", f"program {spec.code} already exists")
        program = Program(
            code=spec.code,
            name=spec.name,
            period_start=spec.period_start,
            period_end=spec.period_end,
            max_age=spec.max_age,
            renewal_lead_days=spec.renewal_lead_days,
            successor=spec.successor,
            verification_reminder_days=spec.verification_reminder_days,
            verification_deadline_days=spec.verification_deadline_days,
            verification_expiry_days=spec.verification_expiry_days,
        )
        session.add(program)
        session.flush()
        for source in spec.funding_sources:
            session.add(
                FundingSource(
                    program_code=spec.code,
                    code=source.code,
                    name=source.name,
                    ceiling_idr=source.ceiling_idr,
                    categories=",".join(source.categories),
                )
            )
    return program


@dataclass(frozen=True)
class SourceTotals:
    """A funding source with what its open commitments add up to."""

    source: FundingSource
    committed_idr: int

    @property
    def remaining_idr(self) -> int:
        return self.source.ceiling_idr - self.committed_idr


def funding_sources(session: Session, program_code: str) -> list[SourceTotals]:
    sources = list(
        session.exec(
            select(FundingSource)
            .where(FundingSource.program_code == program_code)
            .order_by(FundingSource.code)
        ).all()
    )
    totals = ledger.committed(session, [s.id for s in sources if s.id is not None])
    return [SourceTotals(s, totals.get(s.id or 0, 0)) for s in sources]
