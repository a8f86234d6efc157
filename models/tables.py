"""The projection people search, report on and audit. Temporal holds the process state.

Rows are written by activities, idempotently: every write carries a key (``event_key``,
``entry_key``) or a sequence number (``Enrollment.seq``) so a retried or replayed activity writes
nothing twice and an older transition never overwrites a newer one.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Column, Index, Table, UniqueConstraint
from sqlmodel import Field, SQLModel


def table(model: type[SQLModel]) -> Table:
    """The Core table of ``model``, for the hot paths that write with plain statements."""
    return SQLModel.metadata.tables[str(model.__tablename__)]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class District(SQLModel, table=True):
    code: str = Field(primary_key=True, max_length=8)
    name: str = Field(max_length=80)


class Village(SQLModel, table=True):
    code: str = Field(primary_key=True, max_length=13)
    name: str = Field(max_length=80)
    district_code: str = Field(foreign_key="district.code", index=True, max_length=8)
    is_kelurahan: bool = False


class Program(SQLModel, table=True):
    code: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=200)
    period_start: dt.date
    period_end: dt.date
    max_age: int = 60
    renewal_lead_days: int = 30
    successor: str | None = Field(default=None, max_length=40)
    # Verification deadline: a reminder, then escalation; expiry only where the program says so.
    verification_reminder_days: int = 7
    verification_deadline_days: int = 14
    verification_expiry_days: int | None = None
    created_at: dt.datetime = Field(default_factory=utcnow)


class FundingSource(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("program_code", "code"),)

    id: int | None = Field(default=None, primary_key=True)
    program_code: str = Field(foreign_key="program.code", index=True, max_length=40)
    code: str = Field(max_length=40)
    name: str = Field(max_length=200)
    ceiling_idr: int = Field(sa_column=Column(BigInteger, nullable=False))
    committed_idr: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    # Comma-separated categories this source pays for.
    categories: str = Field(max_length=400)

    def category_list(self) -> list[str]:
        return [c for c in self.categories.split(",") if c]


class Person(SQLModel, table=True):
    """One human, keyed by an HMAC of the NIK; the NIK itself is not stored."""

    person_key: str = Field(primary_key=True, max_length=64)
    nik_masked: str = Field(max_length=16)
    full_name: str = Field(max_length=120)
    birth_date: dt.date
    gender: str = Field(max_length=1)
    phone: str | None = Field(default=None, max_length=16)


class Enrollment(SQLModel, table=True):
    """One person in one program period: the searchable projection of a workflow run."""

    __table_args__ = (
        UniqueConstraint("program_code", "person_key", name="uq_enrollment_person_period"),
        Index("ix_enrollment_program_state", "program_code", "state"),
        Index("ix_enrollment_program_village", "program_code", "village_code"),
    )

    id: str = Field(primary_key=True, max_length=40)
    program_code: str = Field(foreign_key="program.code", max_length=40)
    person_key: str = Field(foreign_key="person.person_key", index=True, max_length=64)
    village_code: str = Field(foreign_key="village.code", max_length=13)
    district_code: str = Field(foreign_key="district.code", index=True, max_length=8)
    category: str = Field(max_length=20)
    full_name: str = Field(max_length=120)
    nik_masked: str = Field(max_length=16)
    state: str = Field(max_length=24)
    kpj_number: str | None = Field(default=None, max_length=20)
    coverage_start: dt.date | None = None
    coverage_end: dt.date | None = None
    declared_income_idr: int = Field(sa_column=Column(BigInteger, nullable=False))
    premium_idr: int = Field(sa_column=Column(BigInteger, nullable=False))
    funding_source: str | None = Field(default=None, max_length=40)
    workflow_id: str = Field(index=True, max_length=64)
    # Sequence of the last transition applied: a late or replayed write with a lower one is ignored.
    seq: int = 0
    nominated_by: str = Field(max_length=80)
    nominated_at: dt.datetime = Field(default_factory=utcnow)
    updated_at: dt.datetime = Field(default_factory=utcnow)


class Decision(SQLModel, table=True):
    """A human step the workflow accepted: who, in which role, when, why."""

    id: int | None = Field(default=None, primary_key=True)
    event_key: str = Field(unique=True, max_length=160)
    enrollment_id: str = Field(foreign_key="enrollment.id", index=True, max_length=40)
    action: str = Field(max_length=40)
    actor: str = Field(max_length=80)
    role: str = Field(max_length=40)
    reason: str = Field(default="", max_length=1000)
    state_before: str = Field(max_length=24)
    state_after: str = Field(max_length=24)
    decided_at: dt.datetime


class BudgetEntry(SQLModel, table=True):
    """The budget ledger: commitments (+) and releases (-) against one funding source."""

    __tablename__ = "budget_ledger"

    id: int | None = Field(default=None, primary_key=True)
    entry_key: str = Field(unique=True, max_length=160)
    funding_source_id: int = Field(foreign_key="fundingsource.id", index=True)
    program_code: str = Field(max_length=40)
    enrollment_id: str = Field(index=True, max_length=40)
    kind: str = Field(max_length=10)  # commit | release
    amount_idr: int = Field(sa_column=Column(BigInteger, nullable=False))
    actor: str = Field(max_length=80)
    created_at: dt.datetime = Field(default_factory=utcnow)


class AuditEvent(SQLModel, table=True):
    """Append-only, hash-chained: each row's hash covers its content and the previous row's hash."""

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    event_key: str = Field(unique=True, max_length=160)
    occurred_at: dt.datetime
    actor: str = Field(max_length=80)
    role: str = Field(max_length=40)
    action: str = Field(index=True, max_length=40)
    enrollment_id: str | None = Field(default=None, index=True, max_length=40)
    workflow_id: str | None = Field(default=None, max_length=64)
    run_id: str | None = Field(default=None, max_length=64)
    state_before: str | None = Field(default=None, max_length=24)
    state_after: str | None = Field(default=None, max_length=24)
    reason: str = Field(default="", max_length=1000)
    detail: str = Field(default="{}")  # canonical JSON, no personal data
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class ApiKey(SQLModel, table=True):
    """An API key: only its SHA-256 is stored; the key itself is shown once, at creation."""

    __tablename__ = "api_key"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=80)
    role: str = Field(max_length=40)
    village_code: str | None = Field(default=None, foreign_key="village.code", max_length=13)
    key_hash: str = Field(unique=True, max_length=64)
    prefix: str = Field(max_length=12)  # the key's first characters, to tell keys apart in lists
    created_at: dt.datetime = Field(default_factory=utcnow)
    revoked_at: dt.datetime | None = None
