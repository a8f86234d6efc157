"""Who holds a person's place in a program period: one workflow, claimed before it hears of it.

A nomination's workflow id derives from the person and the program, so Temporal already keeps
two villages from enrolling one person twice in a period. The one other way into a period is a
renewal: the previous period's workflow continues into it under its own id. Both claim the
place here first (the primary key decides who was first); whoever finds it held by another
workflow is refused before anything starts. A nomination's claim is never given back (its
workflow id is the person's for that period); a renewal that does not happen gives its claim
back, and the place is free again.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlmodel import Session, col

from models.db import upsert_into
from models.tables import PeriodClaim, table, utcnow

_CLAIMS = table(PeriodClaim)
_CHUNK = 500


def claim(
    session: Session, *, program_code: str, wanted: Sequence[tuple[str, str]]
) -> dict[str, str]:
    """Claim the period for each ``(person_key, workflow_id)`` not claimed yet; returns each
    person's holder (the asking workflow when the claim is its own)."""
    if not wanted:
        return {}
    sql = session.connection()
    now = utcnow()
    insert = upsert_into(_CLAIMS, sql.dialect.name).on_conflict_do_nothing(
        index_elements=["program_code", "person_key"]
    )
    sql.execute(
        insert,
        [
            {
                "program_code": program_code,
                "person_key": person_key,
                "workflow_id": workflow_id,
                "claimed_at": now,
            }
            for person_key, workflow_id in wanted
        ],
    )
    keys = [person_key for person_key, _ in wanted]
    holders: dict[str, str] = {}
    for start in range(0, len(keys), _CHUNK):
        rows = sql.execute(
            select(_CLAIMS.c.person_key, _CLAIMS.c.workflow_id).where(
                _CLAIMS.c.program_code == program_code,
                _CLAIMS.c.person_key.in_(keys[start : start + _CHUNK]),
            )
        ).all()
        holders.update({person_key: workflow_id for person_key, workflow_id in rows})
    return holders


def unclaim(session: Session, *, program_code: str, person_key: str, workflow_id: str) -> None:
    """Give the place back, if ``workflow_id`` holds it."""
    session.execute(
        delete(PeriodClaim).where(
            col(PeriodClaim.program_code) == program_code,
            col(PeriodClaim.person_key) == person_key,
            col(PeriodClaim.workflow_id) == workflow_id,
        )
    )
