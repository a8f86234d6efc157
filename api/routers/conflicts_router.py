"""Nomination conflicts: DPMD's queue of people two villages nominated in one period."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from api.auth import actor_of, require
from api.deps import SessionDep, StateDep
from api.problems import Conflict, NotFound
from api.schemas import ConflictOut, ConflictPage, ConflictResolutionIn
from domain.records import Actor
from models import conflicts
from models.db import session_scope
from models.tables import NominationConflict
from services.keys import Principal, Role

router = APIRouter(prefix="/v1/conflicts", tags=["conflicts"])


def conflict_out(row: NominationConflict) -> ConflictOut:
    assert row.id is not None
    return ConflictOut(
        id=row.id,
        program=row.program_code,
        enrollment_id=row.enrollment_id,
        nik_masked=row.nik_masked,
        held_by_village=row.held_by_village,
        nominated_by_village=row.nominated_by_village,
        nominated_by=row.nominated_by,
        occurred_at=row.occurred_at,
        resolved_at=row.resolved_at,
        resolved_by=row.resolved_by,
        resolution=row.resolution,
    )


@router.get("", dependencies=[require(Role.DPMD_VERIFIER, Role.AUDITOR)])
def list_conflicts(
    session: SessionDep,
    program: str | None = Query(default=None, max_length=40),
    resolved: bool = False,
    limit: int = Query(default=50, ge=1, le=500),
    cursor: int | None = Query(default=None, ge=0, le=2**31 - 1),
) -> ConflictPage:
    """Open conflicts (or, with ``resolved=true``, resolved ones), oldest first."""
    query = select(NominationConflict)
    if program is not None:
        query = query.where(NominationConflict.program_code == program)
    done = col(NominationConflict.resolved_at).is_not(None)
    query = query.where(done if resolved else ~done)
    if cursor is not None:
        query = query.where(col(NominationConflict.id) > cursor)
    rows = session.exec(query.order_by(col(NominationConflict.id)).limit(limit + 1)).all()
    items = [conflict_out(r) for r in rows[:limit]]
    return ConflictPage(items=items, next_cursor=items[-1].id if len(rows) > limit else None)


def _resolve(state: StateDep, conflict_id: int, actor: Actor, note: str) -> ConflictOut:
    try:
        with session_scope(state.engine) as session:
            return conflict_out(conflicts.resolve(session, conflict_id, actor=actor, note=note))
    except LookupError:
        raise NotFound(f"no conflict {conflict_id}") from None
    except conflicts.AlreadyResolved as exc:
        raise Conflict(str(exc)) from None
    except IntegrityError:
        # Another verifier's resolution committed first (its audit entry's key is taken).
        raise Conflict("resolved already by another verifier") from None


@router.post("/{conflict_id}/resolution", responses={409: {"description": "resolved already"}})
async def resolve_conflict(
    conflict_id: int,
    body: ConflictResolutionIn,
    state: StateDep,
    principal: Principal = require(Role.DPMD_VERIFIER),
) -> ConflictOut:
    """Close a conflict with a note on what DPMD did (told the villages, withdrew one)."""
    return await asyncio.to_thread(_resolve, state, conflict_id, actor_of(principal), body.note)
