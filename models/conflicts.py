"""Nomination conflicts: a person nominated by a village while another village's nomination
holds them this period.

The nominating village learns only that the person is nominated elsewhere (the enrollment's id
and state are not its business); DPMD's queue shows both villages until a verifier resolves
the conflict. Each conflict and its resolution is in the audit chain.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session

from domain.records import Actor
from models import audit_chain
from models.db import upsert_into
from models.tables import NominationConflict, table

# What the nominating village is told.
CONFLICT_MESSAGE = "already nominated elsewhere in this period; DPMD has been told"
_CONFLICTS = table(NominationConflict)


@dataclass(frozen=True)
class Conflict:
    program_code: str
    enrollment_id: str
    nik_masked: str
    held_by_village: str
    nominated_by_village: str
    actor: Actor
    batch_id: str
    occurred_at: dt.datetime


class AlreadyResolved(Exception):
    pass


def record(session: Session, conflicts: Sequence[Conflict]) -> None:
    """Queue ``conflicts`` for DPMD, in the caller's transaction; a batch that runs again
    writes each once (keyed by batch and enrollment)."""
    if not conflicts:
        return
    sql = session.connection()
    insert = upsert_into(_CONFLICTS, sql.dialect.name).on_conflict_do_nothing(
        index_elements=["batch_id", "enrollment_id"]
    )
    sql.execute(
        insert,
        [
            {
                "program_code": c.program_code,
                "enrollment_id": c.enrollment_id,
                "nik_masked": c.nik_masked,
                "held_by_village": c.held_by_village,
                "nominated_by_village": c.nominated_by_village,
                "nominated_by": c.actor.name,
                "batch_id": c.batch_id,
                "occurred_at": c.occurred_at,
            }
            for c in conflicts
        ],
    )
    for c in conflicts:
        audit_chain.append(
            session,
            audit_chain.AuditEntry(
                event_key=f"conflict:{c.batch_id}:{c.enrollment_id}",
                occurred_at=c.occurred_at,
                actor=c.actor.name,
                actor_id=c.actor.id,
                role=c.actor.role,
                action="nomination_conflict",
                enrollment_id=c.enrollment_id,
                reason=f"nominated by {c.nominated_by_village}, held by {c.held_by_village}",
                detail={
                    "held_by_village": c.held_by_village,
                    "nominated_by_village": c.nominated_by_village,
                    "batch": c.batch_id,
                },
            ),
        )


def resolve(session: Session, conflict_id: int, *, actor: Actor, note: str) -> NominationConflict:
    """Close a conflict with DPMD's note; ``LookupError`` if there is none such,
    ``AlreadyResolved`` if someone resolved it first."""
    row = session.get(NominationConflict, conflict_id, with_for_update=True)
    if row is None:
        raise LookupError(conflict_id)
    if row.resolved_at is not None:
        raise AlreadyResolved(f"resolved already by {row.resolved_by} at {row.resolved_at}")
    now = dt.datetime.now(dt.UTC)
    row.resolved_at, row.resolved_by, row.resolution = now, actor.name, note
    session.add(row)
    audit_chain.append(
        session,
        audit_chain.AuditEntry(
            event_key=f"conflict-resolved:{conflict_id}",
            occurred_at=now,
            actor=actor.name,
            actor_id=actor.id,
            role=actor.role,
            action="conflict_resolved",
            enrollment_id=row.enrollment_id,
            reason=note,
            detail={"conflict": conflict_id},
        ),
    )
    return row
