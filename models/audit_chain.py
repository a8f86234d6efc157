"""The append-only audit log, hash-chained so an edited or deleted row is detected.

Each row's ``hash`` is SHA-256 over the previous row's hash and the row's canonical content, so
changing any field of any row, or removing a row from the middle, breaks the chain from there
on. Appends are serialized (an advisory lock on PostgreSQL, BEGIN IMMEDIATE on SQLite) because
two appends reading the same previous hash would fork the chain.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event as orm_events
from sqlalchemy import func, text
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, col, select

from domain.records import Actor
from models.db import insert_new
from models.prepared import Prepared
from models.tables import AuditEvent, table

GENESIS = "0" * 64
# Arbitrary constant naming the audit chain's PostgreSQL advisory lock.
_AUDIT_LOCK = 0x52454E54
_HEAD_INFO = "audit_chain_head"
_LOG = table(AuditEvent)


@dataclass(frozen=True)
class AuditEntry:
    event_key: str
    occurred_at: dt.datetime
    actor: str
    role: str
    action: str
    # Whose credential took the step (``key:17``, ``user:5``): names need not be unique.
    actor_id: str = ""
    enrollment_id: str | None = None
    workflow_id: str | None = None
    run_id: str | None = None
    state_before: str | None = None
    state_after: str | None = None
    reason: str = ""
    detail: dict[str, Any] | None = None


def refused_attempt(
    *,
    key: str,
    actor: Actor,
    action: str,
    enrollment_id: str,
    workflow_id: str | None,
    state: str | None,
    reason: str,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """A step its workflow (or the ledger) refused: Temporal keeps no trace of a refused
    Update, so the attempt, who made it and why it was refused are kept here."""
    return AuditEntry(
        event_key=f"refused:{key}",
        occurred_at=dt.datetime.now(dt.UTC),
        actor=actor.name,
        actor_id=actor.id,
        role=actor.role,
        action=f"refused_{action}",
        enrollment_id=enrollment_id,
        workflow_id=workflow_id,
        state_before=state,
        state_after=state,
        reason=reason,
        detail=detail,
    )


def _canonical_time(value: dt.datetime) -> str:
    if value.tzinfo is None:  # SQLite hands back naive datetimes; they were written as UTC
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


_HASHED = (
    "event_key",
    "occurred_at",
    "actor",
    "actor_id",
    "role",
    "action",
    "enrollment_id",
    "workflow_id",
    "run_id",
    "state_before",
    "state_after",
    "reason",
    "detail",
)


def _hash(prev_hash: str, values: Mapping[str, Any]) -> str:
    content = {name: values[name] for name in _HASHED}
    content["occurred_at"] = _canonical_time(values["occurred_at"])
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def row_hash(prev_hash: str, event: AuditEvent) -> str:
    return _hash(prev_hash, {name: getattr(event, name) for name in _HASHED})


@orm_events.listens_for(OrmSession, "after_transaction_end")
def _forget_head_at_the_end(session: OrmSession, transaction: Any) -> None:
    """The cached head holds only inside the transaction that locked the chain. (A savepoint
    that ends without rollback keeps it: its rows are the transaction's.)"""
    if transaction.parent is None:
        session.info.pop(_HEAD_INFO, None)


@orm_events.listens_for(OrmSession, "after_soft_rollback")
def _forget_head_on_rollback(session: OrmSession, *_: Any) -> None:
    """A rollback, a savepoint's too, may have taken back the row the head names."""
    session.info.pop(_HEAD_INFO, None)


def lock_chain(session: Session) -> None:
    """Serialize appends for the rest of this transaction."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection().execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _AUDIT_LOCK}
        )


_APPEND = Prepared(
    lambda dialect: insert_new(_LOG, key="event_key", dialect=dialect).returning(_LOG.c.id)
)


_CHAIN_HEAD = Prepared(select(_LOG.c.hash).order_by(_LOG.c.id.desc()).limit(1))


def append(session: Session, entry: AuditEntry) -> int | None:
    """Append ``entry`` unless its event_key is already in the log; its row id. Caller commits.

    Plain SQL statements, not ORM objects: every step of every enrollment appends here, and the
    ORM's unit of work was most of the projection's cost in the bench's profile; the insert is
    prepared (models/prepared.py) for the same reason.
    """
    session.flush()  # rows the caller added as objects are in the database before ours
    sql = session.connection()
    prev = session.info.get(_HEAD_INFO)
    if prev is None:  # the transaction's first append: lock the chain and read its head
        lock_chain(session)
        last = _CHAIN_HEAD.first(sql, {})
        prev = last[0] if last is not None else GENESIS
    values: dict[str, Any] = {
        "event_key": entry.event_key,
        "occurred_at": entry.occurred_at.astimezone(dt.UTC),
        "actor": entry.actor,
        "actor_id": entry.actor_id,
        "role": entry.role,
        "action": entry.action,
        "enrollment_id": entry.enrollment_id,
        "workflow_id": entry.workflow_id,
        "run_id": entry.run_id,
        "state_before": entry.state_before,
        "state_after": entry.state_after,
        "reason": entry.reason[:1000],
        "detail": json.dumps(entry.detail or {}, sort_keys=True, separators=(",", ":")),
        "prev_hash": prev,
    }
    values["hash"] = _hash(prev, values)
    added = _APPEND.first(sql, values)
    if added is None:  # already in the log (a retried write): the head stays where it was
        return None
    # The chain is locked until the transaction ends, so its head stays ours: the next append in
    # this transaction (the group-commit writer batches many) links to it without a query.
    session.info[_HEAD_INFO] = values["hash"]
    row_id: int = added[0]
    return row_id


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    checked: int
    first_broken: int | None


def verify_chain(session: Session, *, batch: int = 5000) -> ChainCheck:
    """Walk the log in id order; report the first row whose link or content does not hold."""
    prev = GENESIS
    checked = 0
    last_id = 0
    while True:
        rows = session.exec(
            select(AuditEvent)
            .where(col(AuditEvent.id) > last_id)
            .order_by(col(AuditEvent.id))
            .limit(batch)
        ).all()
        if not rows:
            return ChainCheck(ok=True, checked=checked, first_broken=None)
        for event in rows:
            checked += 1
            if event.prev_hash != prev or row_hash(prev, event) != event.hash:
                return ChainCheck(ok=False, checked=checked, first_broken=event.id)
            prev = event.hash
            last_id = event.id or last_id


@dataclass(frozen=True)
class Head:
    """Where the chain ends: its row count, last row id and that row's hash."""

    count: int
    last_id: int
    hash: str


def head(session: Session) -> Head:
    last = session.exec(select(AuditEvent).order_by(col(AuditEvent.id).desc()).limit(1)).first()
    if last is None or last.id is None:
        return Head(0, 0, GENESIS)
    count = session.exec(select(func.count()).select_from(AuditEvent)).one()
    return Head(int(count), last.id, last.hash)


def head_at(session: Session, last_id: int) -> Head | None:
    """The chain as it stood when ``last_id`` was its last row, or None if that row is gone."""
    row = session.get(AuditEvent, last_id)
    if row is None:
        return None
    count = session.exec(
        select(func.count()).select_from(AuditEvent).where(col(AuditEvent.id) <= last_id)
    ).one()
    return Head(int(count), last_id, row.hash)
