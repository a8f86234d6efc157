"""Request and response bodies of the HTTP API (the contract in shared/API.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from domain.categories import Category
from domain.premium import bpu_rates
from domain.states import State

MAX_LIST_ROWS = 5000
MAX_PERIOD_DAYS = 5 * 366  # a program period of up to five years
Code = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{1,39}$")


def without_nul(value: Any) -> Any:
    """PostgreSQL text cannot hold a NUL character (the write fails, and a workflow's write is
    retried forever), and no field of this API needs one: refuse it at the door."""
    values = value if isinstance(value, list) else [value]
    if any(isinstance(v, str) and "\x00" in v for v in values):
        raise ValueError("must not contain NUL (\\u0000) characters")
    return value


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    _no_nul = field_validator("*")(without_nul)


# --- programs ------------------------------------------------------------------------------


class FundingSourceIn(Body):
    code: str = Code
    name: str = Field(min_length=1, max_length=200)
    ceiling_idr: int = Field(ge=0, le=10**15)
    categories: list[Category] = Field(min_length=1)


class ProgramIn(Body):
    code: str = Code
    name: str = Field(min_length=1, max_length=200)
    period_start: dt.date
    period_end: dt.date
    max_age: int = Field(default=60, ge=15, le=100)
    renewal_lead_days: int = Field(default=30, ge=1, le=365)
    successor: str | None = Field(default=None, max_length=40)
    verification_reminder_days: int = Field(default=7, ge=1, le=365)
    verification_deadline_days: int = Field(default=14, ge=1, le=365)
    verification_expiry_days: int | None = Field(default=None, ge=1, le=365)
    funding_sources: list[FundingSourceIn] = Field(min_length=1, max_length=20)

    # The premium is computed from the BPU rate in force, and the workflow's timers run to the
    # period's end: a period before any rate, or ending in year 9999, cannot be enrolled in.
    @field_validator("period_start")
    @classmethod
    def _rate_in_force(cls, start: dt.date) -> dt.date:
        first = bpu_rates()[0].valid_from
        if start < first:
            raise ValueError(f"no BPU premium rate is in force before {first.isoformat()}")
        return start

    @field_validator("period_end")
    @classmethod
    def _at_most_five_years(cls, end: dt.date, info: ValidationInfo) -> dt.date:
        start = info.data.get("period_start")
        if start is not None and (end - start).days > MAX_PERIOD_DAYS:
            raise ValueError("a program period is at most five years")
        return end


class FundingSourceOut(BaseModel):
    code: str
    name: str
    ceiling_idr: int
    committed_idr: int
    remaining_idr: int
    categories: list[str]


class ProgramOut(BaseModel):
    code: str
    name: str
    period_start: dt.date
    period_end: dt.date
    max_age: int
    renewal_lead_days: int
    successor: str | None
    verification_reminder_days: int
    verification_deadline_days: int
    verification_expiry_days: int | None
    funding_sources: list[FundingSourceOut]


# --- nominations ---------------------------------------------------------------------------


class WorkerIn(BaseModel):
    """A row as the village typed it; each field is checked by the domain rules, per row."""

    # No NUL check here (unlike Body): a bad cell rejects its row, not the village's whole list;
    # domain.worker_rows.validate_row refuses control characters field by field.
    model_config = ConfigDict(extra="ignore")

    nik: str | int | None = None
    full_name: str | None = Field(default=None, max_length=500)
    birth_date: str | dt.date | None = None
    gender: str | None = Field(default=None, max_length=20)
    category: str | None = Field(default=None, max_length=40)
    phone: str | int | None = None
    declared_income_idr: int | str | None = None


class NominationIn(Body):
    village_code: str = Field(max_length=13)
    workers: list[WorkerIn] = Field(min_length=1, max_length=MAX_LIST_ROWS)


class FieldErrorOut(BaseModel):
    field: str
    message: str


class AcceptedRow(BaseModel):
    row: int
    enrollment_id: str
    nik_masked: str
    state: str


class RejectedRow(BaseModel):
    row: int
    nik_masked: str
    errors: list[FieldErrorOut]


class NominationOut(BaseModel):
    accepted: list[AcceptedRow]
    rejected: list[RejectedRow]
    warnings: list[str] = []


# --- enrollments ---------------------------------------------------------------------------


class EnrollmentOut(BaseModel):
    id: str
    program: str
    village_code: str
    district_code: str
    category: str
    full_name: str
    nik_masked: str
    state: State
    kpj_number: str | None
    coverage_start: dt.date | None
    coverage_end: dt.date | None
    premium_idr: int
    funding_source: str | None
    updated_at: dt.datetime
    # An exception DPMD must resolve (BPJS refused the termination for good), else null.
    attention: str | None = None


class EnrollmentPage(BaseModel):
    items: list[EnrollmentOut]
    next_cursor: str | None


class VerificationIn(Body):
    approve: bool
    reason: str = Field(default="", max_length=1000)


class StepOut(BaseModel):
    enrollment_id: str
    state: str


class Selection(Body):
    """Either explicit ids or a whole village's enrollments awaiting the step."""

    enrollment_ids: list[str] | None = Field(default=None, min_length=1, max_length=MAX_LIST_ROWS)
    village_code: str | None = Field(default=None, max_length=13)

    @model_validator(mode="after")
    def _one_selector(self) -> Selection:
        if (self.enrollment_ids is None) == (self.village_code is None):
            raise ValueError("give either enrollment_ids or village_code")
        return self


class BatchVerificationIn(Selection):
    approve: bool
    reason: str = Field(default="", max_length=1000)


class StepResultOut(BaseModel):
    enrollment_id: str
    ok: bool
    state: str | None = None
    error: str | None = None


class BatchOut(BaseModel):
    results: list[StepResultOut]


class BudgetApprovalIn(Selection):
    funding_source: str = Field(max_length=40)
    reason: str = Field(default="", max_length=1000)


class BudgetApprovalOut(BaseModel):
    funding_source: str
    committed_idr: int
    remaining_idr: int
    results: list[StepResultOut]


class WithdrawalIn(Body):
    reason: str = Field(min_length=1, max_length=1000)


class TerminationIn(Body):
    reason: Literal["death", "left_office", "moved", "other"]
    effective_date: dt.date
    note: str = Field(default="", max_length=1000)


class ExceptionResolutionIn(Body):
    """``retry``: tell BPJS again; otherwise the exception was settled outside rentan."""

    retry: bool
    note: str = Field(min_length=1, max_length=1000)


class RenewalIn(Body):
    confirm: bool
    reason: str = Field(default="", max_length=1000)


class Corrections(Body):
    full_name: str | None = Field(default=None, min_length=1, max_length=120)
    birth_date: dt.date | None = None
    gender: Literal["L", "P"] | None = None


class ResubmissionIn(Body):
    corrections: Corrections
    reason: str = Field(min_length=1, max_length=1000)


# --- nomination conflicts ------------------------------------------------------------------


class ConflictOut(BaseModel):
    id: int
    program: str
    enrollment_id: str
    nik_masked: str
    held_by_village: str
    nominated_by_village: str
    nominated_by: str
    occurred_at: dt.datetime
    resolved_at: dt.datetime | None
    resolved_by: str | None
    resolution: str | None


class ConflictPage(BaseModel):
    items: list[ConflictOut]
    next_cursor: int | None


class ConflictResolutionIn(Body):
    note: str = Field(min_length=1, max_length=1000)


# --- history, audit, reports ---------------------------------------------------------------


class AuditEventOut(BaseModel):
    id: int
    occurred_at: dt.datetime
    actor: str
    actor_id: str
    role: str
    action: str
    enrollment_id: str | None
    workflow_id: str | None
    run_id: str | None
    state_before: str | None
    state_after: str | None
    reason: str
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    next_cursor: str | None


class ChainOut(BaseModel):
    ok: bool
    checked: int
    first_broken: int | None


class ReportLineOut(BaseModel):
    key: str
    name: str
    enrollments: int
    active: int
    premium_idr: int
    open_exceptions: int


class CoverageReportOut(BaseModel):
    program: str
    group_by: str
    lines: list[ReportLineOut]
    total_enrollments: int
    total_premium_idr: int
    total_open_exceptions: int


class CoverageIn(Body):
    """Whose coverage, on which day. The NIK travels in the body, never in a URL (proxies and
    access logs keep URLs)."""

    model_config = ConfigDict(extra="forbid")

    nik: str = Field(min_length=1, max_length=40)
    on: dt.date


class CoverageOut(BaseModel):
    covered: bool
    enrollment_id: str | None = None
    kpj_number: str | None = None
    coverage_start: dt.date | None = None
    coverage_end: dt.date | None = None
