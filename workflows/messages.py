"""Typed messages that cross the Temporal boundary: workflow inputs, Update arguments, records.

Plain dataclasses (no table models), imported by workflow code, the activities and the services
alike. Payloads carrying them are encrypted by ``core.codec``: some hold the NIK.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from domain.program_terms import ProgramTerms
from domain.records import SYSTEM, Actor, Commitment, Record

# Activity names the workflows call; ``activities`` registers its implementations under them.
RECORD_STEPS = "record_steps"
OPEN_RENEWAL = "open_renewal"
REGISTER_PARTICIPANT = "register_participant"
EXTEND_PARTICIPANT = "extend_participant"
END_COVERAGE = "end_coverage"
NOMINATE_LIST = "nominate_list"
VERIFY_BATCH = "verify_batch"
APPROVE_BUDGET_BATCH = "approve_budget_batch"


@dataclass(frozen=True)
class PersonData:
    nik: str
    full_name: str
    birth_date: dt.date
    gender: str
    phone: str | None = None


@dataclass(frozen=True)
class Renewal:
    """Carried into the next period's run by continue-as-new."""

    previous_enrollment_id: str
    kpj_number: str
    commitment: Commitment


@dataclass(frozen=True)
class BpjsTiming:
    """How long one BPJS call may take and how far its retries back off (the settings when the
    enrollment was nominated)."""

    call_timeout_s: float = 15.0
    max_backoff_s: float = 120.0


@dataclass(frozen=True)
class EnrollmentInput:
    enrollment_id: str
    program: ProgramTerms
    person: PersonData
    person_key: str
    village_code: str
    district_code: str
    category: str
    declared_income_idr: int
    premium_idr: int
    nominated_by: Actor
    renewal: Renewal | None = None
    bpjs: BpjsTiming = field(default_factory=BpjsTiming)


# --- Update arguments ---------------------------------------------------------------------
# ``batch_id``: the step comes from a batch (a village's list, a batch verification, a budget
# approval), whose activity writes the records the Update answers with, all in one
# transaction; the same batch sending the step again gets the same answer. Without one, the
# workflow writes the step's records itself before it answers.


@dataclass(frozen=True)
class Nomination:
    actor: Actor
    program_code: str
    village_code: str
    batch_id: str | None = None


@dataclass(frozen=True)
class Verification:
    actor: Actor
    approve: bool
    reason: str = ""
    batch_id: str | None = None


@dataclass(frozen=True)
class BudgetApproval:
    """Always from a budget approval's batch: the commitment names it (``approval_id``)."""

    actor: Actor
    commitment: Commitment
    reason: str = ""


@dataclass(frozen=True)
class Withdrawal:
    actor: Actor
    reason: str


@dataclass(frozen=True)
class RenewalConfirmation:
    actor: Actor
    confirm: bool
    reason: str = ""


@dataclass(frozen=True)
class Termination:
    actor: Actor
    reason: str  # death | left_office | moved | other
    effective_date: dt.date
    note: str = ""


@dataclass(frozen=True)
class ExceptionResolution:
    """DPMD resolves an enrollment's open exception: ``retry`` tells BPJS again; otherwise it
    was settled outside rentan (the note says how)."""

    actor: Actor
    retry: bool
    note: str


@dataclass(frozen=True)
class Resubmission:
    actor: Actor
    reason: str
    full_name: str | None = None
    birth_date: dt.date | None = None
    gender: str | None = None


@dataclass(frozen=True)
class StepResult:
    """What an accepted Update answers: the state it left, and the records it made (a batch
    writes them; a single step's are written already)."""

    enrollment_id: str
    state: str
    records: list[Record] = field(default_factory=list)


@dataclass(frozen=True)
class EnrollmentView:
    """The workflow's own view (a Query): the truth the projection follows."""

    enrollment_id: str
    program: str
    state: str
    seq: int
    kpj_number: str | None
    coverage_start: dt.date | None
    coverage_end: dt.date | None
    commitment: Commitment | None
    next_commitment: Commitment | None
    renewal_confirmed: bool


# --- Activity inputs and results ------------------------------------------------------------


@dataclass(frozen=True)
class PeriodRelease:
    """Give up a claim on a person's place in a program period (a renewal that did not
    happen)."""

    program_code: str
    person_key: str
    workflow_id: str


@dataclass(frozen=True)
class RecordBatch:
    """Records to write, with the commitments the same steps release and the claim they give
    up: all in one transaction."""

    records: list[Record]
    releases: list[Commitment] = field(default_factory=list)
    unclaim: PeriodRelease | None = None
    released_by: str = SYSTEM.name


@dataclass(frozen=True)
class RenewalOpening:
    """Claim the next period for this person and read its terms."""

    successor: str | None
    person_key: str
    declared_income_idr: int
    workflow_id: str


@dataclass(frozen=True)
class RenewalTerms:
    """What opening the renewal window found: the next period, or why there is none."""

    enrollment_id: str | None
    program: ProgramTerms | None
    premium_idr: int = 0
    refusal: str | None = None


@dataclass(frozen=True)
class RegistrationRequest:
    idempotency_key: str
    nik: str
    full_name: str
    birth_date: dt.date
    gender: str
    category: str
    village_code: str
    period_start: dt.date
    period_end: dt.date
    # The activation's record, written by the activity once BPJS registered the person (it
    # fills in the KPJ and the coverage).
    activation: Record


@dataclass(frozen=True)
class RegistrationResult:
    kpj_number: str
    coverage_start: dt.date
    coverage_end: dt.date
    # When the activity wrote the activation's record (``domain.records.activated``).
    activation_written_at: dt.datetime | None = None


@dataclass(frozen=True)
class ExtensionRequest:
    idempotency_key: str
    kpj_number: str
    period_start: dt.date
    period_end: dt.date


@dataclass(frozen=True)
class CoverageEnd:
    idempotency_key: str
    kpj_number: str
    effective_date: dt.date
    reason: str


# --- Batches ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListRow:
    """A validated row of a village's list, numbered as the village sees it."""

    row: int
    enrollment: EnrollmentInput


@dataclass(frozen=True)
class NominationList:
    batch_id: str
    program_code: str
    village_code: str
    actor: Actor
    task_queue: str
    rows: list[ListRow]


@dataclass(frozen=True)
class StepTarget:
    """An enrollment a batch step goes to, as the projection showed it."""

    enrollment_id: str
    workflow_id: str
    state: str


@dataclass(frozen=True)
class VerificationBatch:
    batch_id: str
    actor: Actor
    approve: bool
    reason: str
    targets: list[StepTarget]


@dataclass(frozen=True)
class BudgetBatch:
    approval_id: str
    program_code: str
    funding_source: str
    actor: Actor
    reason: str
    enrollment_ids: list[str]


@dataclass(frozen=True)
class Outcome:
    """One row's or one enrollment's answer in a batch."""

    enrollment_id: str
    ok: bool
    state: str | None = None
    error: str | None = None
    field: str = "nik"
    row: int = 0
    nik_masked: str = ""


@dataclass(frozen=True)
class BatchResult:
    outcomes: list[Outcome]
    # A budget approval refused whole (all or nothing): why, and the shortfall if any.
    refusal: str | None = None
    problems: list[str] = field(default_factory=list)
    requested_idr: int = 0
    remaining_idr: int = 0
