"""What an enrollment's steps leave behind: who took them, the budget they commit, and the
records the projection and the audit log are made of.

Plain, frozen dataclasses: the workflows make them, Temporal carries them (encrypted), the
recorder writes them (``models.recorder``), the reconcile command compares them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Actor:
    """Who took a step and in which role (``system`` for what the workflow does on its own)."""

    name: str
    role: str
    village_code: str | None = None
    # The credential's unique id (``key:17`` for an API key, ``user:5`` for a person's account);
    # the name is for people to read and need not be unique.
    id: str = ""


SYSTEM = Actor(name="rentan", role="system", id="system")


@dataclass(frozen=True)
class Commitment:
    """The premium one budget approval committed to one enrollment: the ledger row's key."""

    approval_id: str
    program_code: str
    enrollment_id: str
    funding_source: str
    amount_idr: int


@dataclass(frozen=True)
class Snapshot:
    """An enrollment row as one record leaves it: everything the projection shows of it."""

    enrollment_id: str
    program_code: str
    workflow_id: str
    run_id: str
    run_started_at: dt.datetime
    seq: int
    state: str
    person_key: str
    nik_masked: str
    full_name: str
    birth_date: dt.date
    gender: str
    phone: str | None
    village_code: str
    district_code: str
    category: str
    declared_income_idr: int
    premium_idr: int
    funding_source: str | None
    kpj_number: str | None
    coverage_start: dt.date | None
    coverage_end: dt.date | None
    nominated_by: str
    nominated_at: dt.datetime
    updated_at: dt.datetime
    # An exception DPMD must resolve (BPJS refused a termination for good), else None.
    attention: str | None = None


@dataclass(frozen=True)
class Record:
    """One step of an enrollment, for the projection and the audit log: who, when, why, and the
    row it leaves. Its key (enrollment, run, seq) makes writing it twice a no-op."""

    snapshot: Snapshot
    action: str
    actor: Actor
    state_before: str | None
    reason: str = ""
    detail: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        s = self.snapshot
        return f"{s.enrollment_id}:{s.run_id}:{s.seq}"


def activated(
    draft: Record,
    *,
    kpj_number: str,
    coverage_start: dt.date,
    coverage_end: dt.date,
    at: dt.datetime,
) -> Record:
    """The activation's record as written once BPJS registered the person: the workflow's draft
    with the KPJ, the coverage and the time filled in. The registration activity writes it and
    the workflow keeps it, each made here from the same values."""
    snapshot = dataclasses.replace(
        draft.snapshot,
        kpj_number=kpj_number,
        coverage_start=coverage_start,
        coverage_end=coverage_end,
        updated_at=at,
    )
    return dataclasses.replace(draft, snapshot=snapshot)
