"""Programs and their funding sources: created by an admin, read by any key."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from api.auth import CurrentPrincipal, require
from api.deps import SessionDep, StateDep
from api.problems import Conflict, Invalid
from api.schemas import FundingSourceOut, ProgramIn, ProgramOut
from models.tables import Program
from services.keys import Role
from services.programs import (
    FundingSourceSpec,
    ProgramError,
    ProgramSpec,
    create_program,
    funding_sources,
)

router = APIRouter(prefix="/v1/programs", tags=["programs"])


def program_out(session: SessionDep, program: Program) -> ProgramOut:
    return ProgramOut(
        code=program.code,
        name=program.name,
        period_start=program.period_start,
        period_end=program.period_end,
        max_age=program.max_age,
        renewal_lead_days=program.renewal_lead_days,
        successor=program.successor,
        verification_reminder_days=program.verification_reminder_days,
        verification_deadline_days=program.verification_deadline_days,
        verification_expiry_days=program.verification_expiry_days,
        funding_sources=[
            FundingSourceOut(
                code=t.source.code,
                name=t.source.name,
                ceiling_idr=t.source.ceiling_idr,
                committed_idr=t.committed_idr,
                remaining_idr=t.remaining_idr,
                categories=t.source.category_list(),
            )
            for t in funding_sources(session, program.code)
        ],
    )


def program_of(engine: Engine, code: str) -> Program:
    """The program, or 404; opens its own session (for a route that runs it off the loop)."""
    with Session(engine, expire_on_commit=False) as session:
        return load_program(session, code)


def load_program(session: Session, code: str) -> Program:
    program = session.get(Program, code)
    if program is None:
        raise HTTPException(404, f"program {code} not found")
    return program


@router.post("", status_code=201, dependencies=[require(Role.ADMIN)])
def create_program_route(body: ProgramIn, state: StateDep, session: SessionDep) -> ProgramOut:
    """Create a program with its funding sources."""
    if body.successor and session.get(Program, body.successor) is None:
        raise Invalid(
            f"successor program {body.successor} does not exist; create it first",
            errors=[{"field": "successor", "message": "unknown program"}],
        )
    spec = ProgramSpec(
        code=body.code,
        name=body.name,
        period_start=body.period_start,
        period_end=body.period_end,
        max_age=body.max_age,
        renewal_lead_days=body.renewal_lead_days,
        successor=body.successor,
        verification_reminder_days=body.verification_reminder_days,
        verification_deadline_days=body.verification_deadline_days,
        verification_expiry_days=body.verification_expiry_days,
        funding_sources=[
            FundingSourceSpec(s.code, s.name, s.ceiling_idr, [c.value for c in s.categories])
            for s in body.funding_sources
        ],
    )
    try:
        create_program(state.engine, spec)
    except ProgramError as exc:
        if exc.field == "code":
            raise Conflict(exc.message) from None
        raise Invalid(exc.message, errors=[{"field": exc.field, "message": exc.message}]) from None
    # The request's session may hold a read snapshot from before the insert (SQLite WAL): end it.
    session.rollback()
    return program_out(session, load_program(session, body.code))


@router.get("")
def list_programs(_: CurrentPrincipal, session: SessionDep) -> list[ProgramOut]:
    """Every program, with each funding source's ceiling, committed and remaining amounts."""
    programs = session.exec(select(Program).order_by(Program.period_start)).all()  # type: ignore[arg-type]
    return [program_out(session, p) for p in programs]


@router.get("/{code}")
def get_program(code: str, _: CurrentPrincipal, session: SessionDep) -> ProgramOut:
    """One program with its funding sources."""
    return program_out(session, load_program(session, code))
