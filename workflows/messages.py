"""Typed messages that cross the Temporal boundary: workflow input, Update arguments, results.

Plain dataclasses (no table models): adding a field with a default never breaks a running
workflow. Payloads carrying these are encrypted by ``rentan.codec`` since some hold the NIK.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Actor:
    """Who took a step and in which role (``system`` for what the workflow does on its own)."""

    name: str
    role: str
    village_code: str | None = None


SYSTEM = Actor(name="rentan", role="system")


@dataclass(frozen=True)
class ProgramTerms:
    """What an enrollment needs to know of its program period, fixed when it starts."""

    code: str
    period_start: dt.date
    period_end: dt.date
    renewal_lead_days: int
    successor: str | None
    verification_reminder_days: int = 7
    verification_deadline_days: int = 14
    verification_expiry_days: int | None = None


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
    funding_source: str
    premium_idr: int


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
    # Set on every run started by this code: it records its steps the lean way without asking
    # the "lean-steps" patch, whose marker and TemporalChangeVersion upsert cost the server an
    # event and a visibility write per enrollment. Runs started before carry no such field (False
    # on decoding) and ask the patch, so they replay as they ran.
    lean_steps: bool = False
    # Set on every run started by this code: budget approval answers without a local activity;
    # its record (and the start of the registration) is written by the registration activity
    # before it calls BPJS, or by any earlier write (``EnrollmentWorkflow._record``). Runs started
    # before carry no such field and record it in the Update, as they ran.
    budget_recorded_by_registration: bool = False


# --- Update arguments ---------------------------------------------------------------------


@dataclass(frozen=True)
class NominationRequest:
    """The nomination itself, sent with the start (update-with-start) so its answer is durable.
    ``recorded_by_caller``: the caller writes the enrollment row itself, from the answer's
    ``nomination`` (a village's list writes all its rows in one transaction,
    ``rentan.nominations``); the workflow writes it only if no human step reaches it first
    (``EnrollmentWorkflow.nominate``)."""

    actor: Actor
    village_code: str
    recorded_by_caller: bool = False


@dataclass(frozen=True)
class NominationRefusal:
    """Signal: the caller could not write a ``recorded_by_caller`` nomination, for good (someone
    else holds the person's period, or the database refuses the row): the run fails, as a
    refused nomination's does, so the id stays free."""

    reason: str
    # The run's failure type: someone else holds the period, or the database refused the row.
    kind: str = "DuplicateNomination"


@dataclass(frozen=True)
class Verification:
    """The verifier's decision. ``recorded_by_caller``: an approval the caller writes to the
    projection itself, from the answer's ``to_record`` (batch verification writes a whole list
    in one transaction, ``rentan.steps.verify_many``); the workflow records it only with its
    next write (``EnrollmentWorkflow.verify``)."""

    actor: Actor
    approve: bool
    reason: str = ""
    recorded_by_caller: bool = False
    # The seq of the row the caller found the enrollment by (``rentan.steps.seen_at``): 1 or
    # more says the nomination's row exists, so the workflow need not write it.
    projected_seq: int = 0


@dataclass(frozen=True)
class BudgetCommitment:
    """The budget officer committed ``amount_idr`` of ``funding_source`` to this enrollment."""

    actor: Actor
    program_code: str
    funding_source: str
    amount_idr: int
    reason: str = ""
    # The seq of the enrollment's row when the ledger committed: steps up to it are in the
    # projection already, and the workflow's next write leaves them out.
    projected_seq: int = 0


@dataclass(frozen=True)
class Withdrawal:
    actor: Actor
    reason: str
    projected_seq: int = 0  # as ``Verification.projected_seq``


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
class Resubmission:
    actor: Actor
    reason: str
    full_name: str | None = None
    birth_date: dt.date | None = None
    gender: str | None = None


@dataclass(frozen=True)
class StepResult:
    """What an accepted Update answers: the enrollment's state once the step took effect, and
    the seq of its last step (the projection shows the step once its row has that seq)."""

    enrollment_id: str
    state: str
    seq: int = 0
    # Steps the caller is to write to the projection (a ``recorded_by_caller`` verification).
    to_record: list[Transition] = field(default_factory=list)
    # The enrollment row the caller is to write (a ``recorded_by_caller`` nomination).
    nomination: NominationRecord | None = None


@dataclass(frozen=True)
class EnrollmentView:
    """The workflow's own view (a Query): the truth the projection follows."""

    enrollment_id: str
    program: str
    state: str
    kpj_number: str | None
    coverage_start: dt.date | None
    coverage_end: dt.date | None
    funding_source: str | None
    renewal_confirmed: bool
    next_budget: str | None
    seq: int


# --- Activity inputs ----------------------------------------------------------------------


@dataclass(frozen=True)
class EnrollmentChanges:
    """Projection fields a transition sets besides the state (None leaves a field alone)."""

    kpj_number: str | None = None
    coverage_start: dt.date | None = None
    coverage_end: dt.date | None = None
    funding_source: str | None = None
    full_name: str | None = None
    birth_date: dt.date | None = None
    gender: str | None = None


@dataclass(frozen=True)
class Transition:
    """One step of an enrollment for the projection and the audit log (idempotent by seq)."""

    enrollment_id: str
    workflow_id: str
    run_id: str
    seq: int
    action: str
    actor: Actor
    state_before: str
    state_after: str
    occurred_at: dt.datetime
    reason: str = ""
    human: bool = False
    changes: EnrollmentChanges | None = None
    detail: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NominationRecord:
    """The enrollment row to create at nomination (or at the start of a renewed period)."""

    input: EnrollmentInput
    workflow_id: str
    run_id: str
    occurred_at: dt.datetime
    state: str = "nominated"


@dataclass(frozen=True)
class NominationOutcome:
    recorded: bool
    existing_enrollment_id: str | None = None
    existing_village_code: str | None = None
    existing_state: str | None = None

    def refusal(self, program_code: str) -> str:
        """Why the nomination was not recorded: who holds the person's period."""
        return (
            f"already nominated for {program_code} by village {self.existing_village_code} "
            f"as enrollment {self.existing_enrollment_id} ({self.existing_state})"
        )


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
    # Lean runs: the activation to record once BPJS has registered the person (the activity
    # fills in the KPJ, the coverage and the time), in the same activity, not a local one after.
    activation: Transition | None = None
    # Steps taken but not yet written (budget approval and the start of the registration): the
    # activity records them before it calls BPJS, so the projection shows "registering" while
    # BPJS is tried.
    record_first: list[Transition] = field(default_factory=list)


@dataclass(frozen=True)
class RegistrationResult:
    kpj_number: str
    coverage_start: dt.date
    coverage_end: dt.date


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


@dataclass(frozen=True)
class BudgetRelease:
    enrollment_id: str
    program_code: str
    actor: Actor
    reason: str


@dataclass(frozen=True)
class BudgetRecommit:
    """Commit the budget again after a release (resubmission of a failed registration)."""

    enrollment_id: str
    program_code: str
    funding_source: str
    amount_idr: int
    actor: Actor


@dataclass(frozen=True)
class RenewalOpening:
    """Reserve the next period for this person (the successor program's enrollment row)."""

    current: EnrollmentInput
    workflow_id: str
    occurred_at: dt.datetime


@dataclass(frozen=True)
class RenewalTerms:
    """What opening the renewal window found: the next period, or why there is none."""

    enrollment_id: str | None
    program: ProgramTerms | None
    premium_idr: int = 0
    refusal: str | None = None
