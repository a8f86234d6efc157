"""The one path by which records reach the projection: the enrollment row and the audit log.

A record carries the whole row its step leaves (``Snapshot``). Writing it upserts the row
unless the row holds a newer snapshot (a later ``(run_started_at, seq)``), and appends the
step to the audit log unless the log has its key (enrollment, run, seq) already. So records
may be written in any order, any number of times, by any writer: a batch's activity, a local
activity, the registration activity, ``rentan reconcile --repair``, and the projection ends the
same. No lock orders them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Insert, tuple_
from sqlmodel import Session

from core.sealing import Sealer
from domain.records import Record
from models import audit_chain
from models.db import upsert_into
from models.prepared import Prepared
from models.tables import Enrollment, table

_ROWS = table(Enrollment)
_COLUMNS = tuple(c.name for c in _ROWS.columns)


def _upsert(dialect: str) -> Insert:
    """INSERT the row, or take the snapshot over the one there if it is newer."""
    insert = upsert_into(_ROWS, dialect)
    newer = tuple_(_ROWS.c.run_started_at, _ROWS.c.seq) < tuple_(
        insert.excluded.run_started_at, insert.excluded.seq
    )
    return insert.on_conflict_do_update(
        index_elements=["id"],
        set_={name: insert.excluded[name] for name in _COLUMNS if name != "id"},
        where=newer,
    )


# Every step of every enrollment runs this: prepared once (models/prepared.py).
_UPSERT_ROW = Prepared(_upsert)


def row_values(record: Record, sealer: Sealer) -> dict[str, Any]:
    """The enrollment row as the record leaves it, its birth date sealed."""
    s = record.snapshot
    return {
        "id": s.enrollment_id,
        "program_code": s.program_code,
        "workflow_id": s.workflow_id,
        "run_id": s.run_id,
        "run_started_at": s.run_started_at,
        "seq": s.seq,
        "state": s.state,
        "person_key": s.person_key,
        "nik_masked": s.nik_masked,
        "full_name": s.full_name,
        "birth_date_sealed": sealer.seal(s.birth_date.isoformat(), row=s.enrollment_id),
        "gender": s.gender,
        "phone": s.phone,
        "village_code": s.village_code,
        "district_code": s.district_code,
        "category": s.category,
        "declared_income_idr": s.declared_income_idr,
        "premium_idr": s.premium_idr,
        "funding_source": s.funding_source,
        "kpj_number": s.kpj_number,
        "coverage_start": s.coverage_start,
        "coverage_end": s.coverage_end,
        "nominated_by": s.nominated_by,
        "nominated_at": s.nominated_at,
        "updated_at": s.updated_at,
        "attention": s.attention,
    }


def audit_entry(record: Record) -> audit_chain.AuditEntry:
    s = record.snapshot
    return audit_chain.AuditEntry(
        event_key=record.key,
        occurred_at=s.updated_at,
        actor=record.actor.name,
        actor_id=record.actor.id,
        role=record.actor.role,
        action=record.action,
        enrollment_id=s.enrollment_id,
        workflow_id=s.workflow_id,
        run_id=s.run_id,
        state_before=record.state_before,
        state_after=s.state,
        reason=record.reason,
        detail=record.detail,
    )


def write_records(session: Session, records: Sequence[Record], sealer: Sealer) -> None:
    """Write ``records`` in the caller's transaction; idempotent and order-independent."""
    sql = session.connection()
    for record in records:
        _UPSERT_ROW.run(sql, row_values(record, sealer))
        audit_chain.append(session, audit_entry(record))
