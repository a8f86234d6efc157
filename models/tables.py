"""The projection people search, report on and audit, and the facts only the database holds.

Temporal holds each enrollment's process state. The ``enrollment`` rows and the audit log are
its projection, written only by ``models.recorder`` from the records workflows make: each
record carries the row's whole snapshot, and a row keeps the snapshot with the highest
``(run_started_at, seq)``, so records may land in any order and any number of times.

The budget ledger (``commitment``) and the period claims (``period_claim``) are facts of their
own, each with one writer (``models.ledger``, ``models.claims``).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Column, Index, Table, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from domain.program_terms import ProgramTerms


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

    def terms(self) -> ProgramTerms:
        """What an enrollment of this program needs to know of it."""
        return ProgramTerms(
            code=self.code,
            period_start=self.period_start,
            period_end=self.period_end,
            renewal_lead_days=self.renewal_lead_days,
            successor=self.successor,
            verification_reminder_days=self.verification_reminder_days,
            verification_deadline_days=self.verification_deadline_days,
            verification_expiry_days=self.verification_expiry_days,
            max_age=self.max_age,
        )


class FundingSource(SQLModel, table=True):
    """A ceiling (pagu) and the categories it pays for. What is committed against it is the sum
    of its open commitments (``models.ledger``), never a stored total."""

    __table_args__ = (UniqueConstraint("program_code", "code"),)

    id: int | None = Field(default=None, primary_key=True)
    program_code: str = Field(foreign_key="program.code", index=True, max_length=40)
    code: str = Field(max_length=40)
    name: str = Field(max_length=200)
    ceiling_idr: int = Field(sa_column=Column(BigInteger, nullable=False))
    # Comma-separated categories this source pays for.
    categories: str = Field(max_length=400)

    def category_list(self) -> list[str]:
        return [c for c in self.categories.split(",") if c]


class Enrollment(SQLModel, table=True):
    """One person in one program period: the latest snapshot its workflow runs recorded.

    The id derives from the person and the program, so a person has one row per period
    whichever village nominates them and however often (a re-nomination is a new run)."""

    __table_args__ = (
        Index("ix_enrollment_program_state", "program_code", "state"),
        Index("ix_enrollment_program_village", "program_code", "village_code"),
    )

    id: str = Field(primary_key=True, max_length=40)
    program_code: str = Field(foreign_key="program.code", max_length=40)
    workflow_id: str = Field(index=True, max_length=64)
    run_id: str = Field(max_length=64)
    # Which snapshot is newest: runs of one workflow id follow each other in time, and within a
    # run every record takes the next seq.
    run_started_at: dt.datetime
    seq: int
    state: str = Field(max_length=24)
    person_key: str = Field(index=True, max_length=64)
    nik_masked: str = Field(max_length=16)
    full_name: str = Field(max_length=120)
    # Sealed (core.sealing): beside the masked NIK it would give the whole NIK back.
    birth_date_sealed: str = Field(max_length=100)
    gender: str = Field(max_length=1)
    phone: str | None = Field(default=None, max_length=16)
    village_code: str = Field(foreign_key="village.code", max_length=13)
    district_code: str = Field(foreign_key="district.code", index=True, max_length=8)
    category: str = Field(max_length=20)
    declared_income_idr: int = Field(sa_column=Column(BigInteger, nullable=False))
    premium_idr: int = Field(sa_column=Column(BigInteger, nullable=False))
    funding_source: str | None = Field(default=None, max_length=40)
    kpj_number: str | None = Field(default=None, max_length=20)
    coverage_start: dt.date | None = None
    coverage_end: dt.date | None = None
    nominated_by: str = Field(max_length=80)
    nominated_at: dt.datetime
    updated_at: dt.datetime
    # An exception DPMD must resolve (BPJS refused a termination for good), else None.
    attention: str | None = Field(default=None, max_length=300)


class Commitment(SQLModel, table=True):
    """The premium a budget approval committed to one enrollment, until released.

    Keyed by the approval that made it; at most one open commitment per enrollment and program
    (the partial unique index), so racing approvals fund a person once."""

    __table_args__ = (
        UniqueConstraint("approval_id", "enrollment_id", name="uq_commitment_approval"),
        Index(
            "uq_commitment_open",
            "program_code",
            "enrollment_id",
            unique=True,
            sqlite_where=text("released_at IS NULL"),
            postgresql_where=text("released_at IS NULL"),
        ),
        Index("ix_commitment_source_open", "funding_source_id", "released_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    approval_id: str = Field(max_length=64)
    program_code: str = Field(foreign_key="program.code", max_length=40)
    enrollment_id: str = Field(max_length=40)
    funding_source_id: int = Field(foreign_key="fundingsource.id")
    amount_idr: int = Field(sa_column=Column(BigInteger, nullable=False))
    committed_by: str = Field(max_length=80)
    committed_at: dt.datetime
    released_at: dt.datetime | None = None
    released_by: str | None = Field(default=None, max_length=80)
    release_reason: str | None = Field(default=None, max_length=200)


class PeriodClaim(SQLModel, table=True):
    """Which workflow holds a person's place in a program period: the nomination's own, or the
    previous period's renewing into it. Claimed before that workflow hears of the period."""

    __tablename__ = "period_claim"

    program_code: str = Field(primary_key=True, max_length=40)
    person_key: str = Field(primary_key=True, max_length=64)
    workflow_id: str = Field(max_length=64)
    claimed_at: dt.datetime


class NominationConflict(SQLModel, table=True):
    """A village nominated a person another village's nomination holds this period. The
    village is told only that; DPMD sees both villages here until someone resolves it."""

    __tablename__ = "nomination_conflict"
    __table_args__ = (UniqueConstraint("batch_id", "enrollment_id"),)

    id: int | None = Field(default=None, primary_key=True)
    program_code: str = Field(foreign_key="program.code", index=True, max_length=40)
    enrollment_id: str = Field(max_length=40)
    nik_masked: str = Field(max_length=16)
    held_by_village: str = Field(foreign_key="village.code", max_length=13)
    nominated_by_village: str = Field(foreign_key="village.code", max_length=13)
    nominated_by: str = Field(max_length=80)
    batch_id: str = Field(max_length=64)
    occurred_at: dt.datetime
    resolved_at: dt.datetime | None = None
    resolved_by: str | None = Field(default=None, max_length=80)
    resolution: str | None = Field(default=None, max_length=1000)


class AuditEvent(SQLModel, table=True):
    """Append-only, hash-chained: each row's hash covers its content and the previous row's hash."""

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    event_key: str = Field(unique=True, max_length=160)
    occurred_at: dt.datetime
    actor: str = Field(max_length=80)
    actor_id: str = Field(default="", max_length=40)
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
    expires_at: dt.datetime | None = None  # refused from then on; None: until revoked
