"""``EnrollmentWorkflow``: one person in one program period, from nomination to the end of coverage.

nominated -verify-> verified -budget-> budget_approved -> registering -> active -> renewal_pending
-> active (next period, continue-as-new) | lapsed. Human steps are Updates with validators (the
caller learns at once whether the step was taken); each accepted step is written to the
projection and the audit log by a local activity before the Update answers, so a read after the
answer sees it. Three exceptions. Budget approval: the registration starts straight after it,
and the registration activity writes both steps before it calls BPJS, so the Update needs no
local activity of its own; the caller waits for the projection instead (``rentan.steps``). An
approval from a batch verification: the caller writes the whole batch's records in one
transaction from the Updates' answers (``rentan.steps.verify_many``), and the workflow keeps
each record for its own next write until the budget approval says the projection holds it. A
nomination from a village's list: the list's call writes its rows in one transaction
(``rentan.nominations``), and the workflow writes the row itself before any write of its own
until a step's caller says it found the row (``projected_seq``).
Deadlines are durable timers. All I/O lives in activities.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from typing import NamedTuple

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.bpjs import BpjsActivities
    from activities.projection import ProjectionActivities
    from domain.states import State, refusal
    from workflows import search_attributes as sa
    from workflows import timing
    from workflows.messages import (
        SYSTEM,
        Actor,
        BudgetCommitment,
        BudgetRecommit,
        BudgetRelease,
        CoverageEnd,
        EnrollmentChanges,
        EnrollmentInput,
        EnrollmentView,
        ExtensionRequest,
        NominationRecord,
        NominationRefusal,
        NominationRequest,
        PersonData,
        RegistrationRequest,
        RegistrationResult,
        Renewal,
        RenewalConfirmation,
        RenewalOpening,
        RenewalTerms,
        Resubmission,
        StepResult,
        Termination,
        Transition,
        Verification,
        Withdrawal,
    )

LOCAL_TIMEOUT = timedelta(seconds=30)
# Transient BPJS failures retry with backoff, for as long as it takes; what retrying cannot fix
# (NIK unknown to the population registry, already registered) ends the attempt at once.
BPJS_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    non_retryable_error_types=["NikUnknown", "AlreadyRegistered", "InvalidParticipant"],
)
# The adapter gives up after 10 s; a worker that died mid-call is noticed 15 s in, not 30.
BPJS_TIMEOUT = timedelta(seconds=15)
NOMINATION_GRACE = timedelta(hours=1)
# Patch id. Runs started from its introduction on: the state is no longer upserted as a search
# attribute, and budget approval records the start of the registration with it. Recorded runs
# replay the old way. Runs started now carry ``EnrollmentInput.lean_steps`` instead.
LEAN_STEPS = "lean-steps"


class _Step(NamedTuple):
    """A step to record: what, who, why, and the states around it."""

    action: str
    actor: Actor
    reason: str
    before: State
    after: State
    changes: EnrollmentChanges | None = None
    detail: dict[str, str] | None = None


@workflow.defn
class EnrollmentWorkflow:
    @workflow.init
    def __init__(self, inp: EnrollmentInput) -> None:
        self.inp = inp
        self.person: PersonData = inp.person
        self.state: State | None = State.ACTIVE if inp.renewal else None
        self.seq = 0
        self.kpj: str | None = inp.renewal.kpj_number if inp.renewal else None
        self.coverage: tuple[dt.date, dt.date] | None = None
        self.funding_source: str | None = inp.renewal.funding_source if inp.renewal else None
        self.registration_attempt = 0
        self.renewal_confirmed = False
        self.next_terms: RenewalTerms | None = None
        self.next_budget: BudgetCommitment | None = None
        self.terminated: Termination | None = None
        self.duplicate: str | None = None
        self.refusal_kind = "DuplicateNomination"  # the type the run fails with, if refused
        # A human step in flight: the next one waits its turn (its validator refuses it), so two
        # steps never interleave at their awaits (say, a withdrawal racing a resubmission).
        self.step_in_progress: str | None = None
        # Set while the workflow itself changes period (renewal, lapse): human steps wait.
        self.closing: str | None = None
        # Records reach the projection in seq order: a human step's record and the main line's
        # next one would otherwise race, and the older one (seq guard) would be dropped.
        self.record_lock = asyncio.Lock()
        # Steps taken whose records are not written yet (budget approval on runs that record it
        # with the registration): the next write, whichever it is, writes them first.
        self.unrecorded: list[Transition] = []
        # A nomination its caller writes (``NominationRequest.recorded_by_caller``), until a
        # step's caller says it found the row (``projected_seq``). A write of the workflow's own
        # before that writes the row first (idempotently).
        self.nomination_unconfirmed: NominationRecord | None = None

    # --- the main line --------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: EnrollmentInput) -> str:
        if inp.renewal is not None:
            await self._start_renewed_period(inp.renewal)
        else:
            try:
                await workflow.wait_condition(
                    lambda: self.state is not None or self.duplicate is not None,
                    timeout=NOMINATION_GRACE,
                )
            except TimeoutError:
                raise ApplicationError("started without a nomination", non_retryable=True) from None
            if self.duplicate is None:
                await self._await_verification()
            if self.duplicate is not None:
                # Failing (not completing) lets the id be used again once the other one ends.
                await workflow.wait_condition(workflow.all_handlers_finished)
                raise ApplicationError(self.duplicate, type=self.refusal_kind)
            await workflow.wait_condition(lambda: self.state != State.VERIFIED)
            while self.state in (State.BUDGET_APPROVED, State.REGISTERING):
                await self._register()
                if self.state == State.REGISTRATION_FAILED:
                    await self._await_resubmission()
        if self.state in (State.ACTIVE, State.RENEWAL_PENDING):
            await self._cover()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state_name()

    async def _await_verification(self) -> None:
        """Reminder, escalation and (where the program says so) expiry while nobody verifies."""
        terms = self.inp.program
        started = workflow.now()
        stages: list[tuple[int, str]] = [
            (terms.verification_reminder_days, "verification_reminder"),
            (terms.verification_deadline_days, "verification_escalated"),
        ]
        if terms.verification_expiry_days is not None:
            stages.append((terms.verification_expiry_days, "verification_expired"))

        # A nomination its caller could not write (``refuse_nomination``) ends the wait too.
        def decided() -> bool:
            return self.state != State.NOMINATED or self.duplicate is not None

        for days, action in sorted(stages):
            left = timing.until(started + timedelta(days=days), workflow.now())
            try:
                await workflow.wait_condition(decided, timeout=left)
                return
            except TimeoutError:
                if action == "verification_expired":
                    await self._move(State.EXPIRED, action, SYSTEM, "verification deadline passed")
                    return
                await self._note(action, f"not verified after {days} days")
        await workflow.wait_condition(decided)

    async def _register(self) -> None:
        if self.state == State.BUDGET_APPROVED:
            await self._move(State.REGISTERING, "registration_started", SYSTEM)
        self.registration_attempt += 1
        # The step that led here may still be writing its record (budget approval records the
        # start of registration with it): BPJS is called once the projection shows it.
        await workflow.wait_condition(lambda: not self.record_lock.locked())
        # Lean runs record the activation in the registration activity itself: one local
        # activity (and one workflow activation) fewer per enrollment. Its seq is taken only if
        # the registration succeeds.
        lean = self.inp.lean_steps
        first: list[Transition] = []
        try:
            # Held while the activity may record: any other record waits and takes a later seq.
            # (Runs started before lean_steps never held it here, and replay as they ran.)
            async with self.record_lock if lean else nullcontext():
                first, self.unrecorded = self.unrecorded, []
                activation = (
                    self._transition(
                        _Step("activated", SYSTEM, "", State.REGISTERING, State.ACTIVE),
                        seq=self.seq + 1,
                        occurred_at=workflow.now(),
                    )
                    if lean
                    else None
                )
                result: RegistrationResult = await workflow.execute_activity_method(
                    BpjsActivities.register_participant,
                    self._registration_request(activation, first),
                    start_to_close_timeout=BPJS_TIMEOUT,
                    retry_policy=BPJS_RETRY,
                )
        except ActivityError as err:
            # The activity wrote ``first`` before calling BPJS, unless it ended some other way
            # (cancelled): the next write sends them again (writes are idempotent by seq).
            self.unrecorded = first + self.unrecorded
            cause = err.cause
            kind = cause.type if isinstance(cause, ApplicationError) else None
            message = cause.message if isinstance(cause, ApplicationError) else str(err)
            await self._release_budget(f"registration ended: {message}")
            if kind == "AlreadyRegistered":
                details = cause.details if isinstance(cause, ApplicationError) else ()
                kpj = str(details[0]) if details else None
                self.kpj = kpj  # the view reports the KPJ BPJS already issued, as the row does
                await self._move(
                    State.ALREADY_COVERED,
                    "already_covered",
                    SYSTEM,
                    message,
                    changes=EnrollmentChanges(kpj_number=kpj),
                )
            else:
                await self._move(State.REGISTRATION_FAILED, "registration_failed", SYSTEM, message)
            return
        self.kpj = result.kpj_number
        self.coverage = (result.coverage_start, result.coverage_end)
        if activation is not None:  # recorded by the activity
            self.seq = activation.seq
            self.state = State.ACTIVE
            return
        await self._move(
            State.ACTIVE,
            "activated",
            SYSTEM,
            changes=EnrollmentChanges(
                kpj_number=result.kpj_number,
                coverage_start=result.coverage_start,
                coverage_end=result.coverage_end,
            ),
        )

    def _registration_request(
        self, activation: Transition | None, first: list[Transition]
    ) -> RegistrationRequest:
        terms = self.inp.program
        return RegistrationRequest(
            # Same key on every retry and replay: BPJS registers the person at most once.
            idempotency_key=f"{workflow.info().workflow_id}:{terms.code}:{self.registration_attempt}",
            nik=self.person.nik,
            full_name=self.person.full_name,
            birth_date=self.person.birth_date,
            gender=self.person.gender,
            category=self.inp.category,
            village_code=self.inp.village_code,
            period_start=terms.period_start,
            period_end=terms.period_end,
            activation=activation,
            record_first=first,
        )

    async def _await_resubmission(self) -> None:
        """A failed registration waits for corrected data or withdrawal until the period ends."""
        left = timing.until(timing.end_of(self.inp.program.period_end), workflow.now())
        try:
            await workflow.wait_condition(
                lambda: self.state != State.REGISTRATION_FAILED, timeout=left
            )
        except TimeoutError:
            await self._note("resubmission_window_closed", "the period ended")

    async def _start_renewed_period(self, renewal: Renewal) -> None:
        terms = self.inp.program
        self.closing = "the enrollment is moving into its next period"
        try:
            result: RegistrationResult = await workflow.execute_activity_method(
                BpjsActivities.extend_participant,
                ExtensionRequest(
                    idempotency_key=f"{workflow.info().workflow_id}:{terms.code}:extend",
                    kpj_number=renewal.kpj_number,
                    period_start=terms.period_start,
                    period_end=terms.period_end,
                ),
                start_to_close_timeout=BPJS_TIMEOUT,
                retry_policy=BPJS_RETRY,
            )
        except ActivityError as err:
            # BPJS refused the extension for good: the new period never starts.
            cause = err.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(err)
            self.closing = None
            await self._move(
                State.LAPSED,
                "renewal_failed",
                SYSTEM,
                f"BPJS refused the extension: {message}",
                previous=State.RENEWAL_PENDING,
            )
            await self._release_budget(f"renewal failed: {message}")
            return
        self.closing = None
        self.coverage = (result.coverage_start, result.coverage_end)
        await self._move(
            State.ACTIVE,
            "renewed",
            SYSTEM,
            f"continues {renewal.previous_enrollment_id}",
            changes=EnrollmentChanges(
                kpj_number=renewal.kpj_number,
                coverage_start=result.coverage_start,
                coverage_end=result.coverage_end,
                funding_source=renewal.funding_source,
            ),
            previous=State.RENEWAL_PENDING,
        )

    async def _cover(self) -> None:
        """Coverage until the period ends: renewal window, then renewal or lapse."""
        terms = self.inp.program
        opens = timing.renewal_opens(terms.period_end, terms.renewal_lead_days)
        ends = timing.end_of(terms.period_end)
        if await self._terminated_before(opens):
            return
        if self.state == State.ACTIVE:
            self.next_terms = await workflow.execute_local_activity_method(
                ProjectionActivities.open_renewal,
                RenewalOpening(self.inp, workflow.info().workflow_id, workflow.now()),
                start_to_close_timeout=LOCAL_TIMEOUT,
            )
            await self._move(
                State.RENEWAL_PENDING,
                "renewal_window_opened",
                SYSTEM,
                self.next_terms.refusal or f"next period: {self.next_terms.enrollment_id}",
            )
        if await self._terminated_before(ends):
            return
        # From here the period closes (renewal or lapse); no human step may interleave.
        await workflow.wait_condition(lambda: self.step_in_progress is None)
        if self.terminated is not None:  # a termination landed just before the period ended
            return
        self.closing = "the period is closing"
        terms_next = self.next_terms
        if (
            terms_next is not None
            and terms_next.program is not None
            and terms_next.enrollment_id is not None
            and self.renewal_confirmed
            and self.next_budget is not None
        ):
            await self._move(State.ACTIVE, "period_completed", SYSTEM, "renewed")
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(
                EnrollmentInput(
                    enrollment_id=terms_next.enrollment_id,
                    program=terms_next.program,
                    person=self.person,
                    person_key=self.inp.person_key,
                    village_code=self.inp.village_code,
                    district_code=self.inp.district_code,
                    category=self.inp.category,
                    declared_income_idr=self.inp.declared_income_idr,
                    premium_idr=self.next_budget.amount_idr,
                    nominated_by=self.inp.nominated_by,
                    lean_steps=True,
                    budget_recorded_by_registration=True,
                    renewal=Renewal(
                        previous_enrollment_id=self.inp.enrollment_id,
                        kpj_number=self.kpj or "",
                        funding_source=self.next_budget.funding_source,
                        premium_idr=self.next_budget.amount_idr,
                    ),
                )
            )
        missing = [
            what
            for what, ok in (
                ("village confirmation", self.renewal_confirmed),
                ("budget for the next period", self.next_budget is not None),
                ("a successor program", terms_next is not None and terms_next.program is not None),
            )
            if not ok
        ]
        await self._close_renewal(f"lapsed without {', '.join(missing)}")
        await self._move(
            State.LAPSED, "lapsed", SYSTEM, f"period ended without {', '.join(missing)}"
        )

    async def _terminated_before(self, moment: dt.datetime) -> bool:
        try:
            await workflow.wait_condition(
                lambda: self.terminated is not None,
                timeout=timing.until(moment, workflow.now()),
            )
        except TimeoutError:
            return False
        return True

    async def _close_renewal(self, reason: str) -> None:
        """Give back the next period's reservation and any budget committed to it."""
        if self.next_terms is not None and self.next_terms.enrollment_id is not None:
            await workflow.execute_local_activity_method(
                ProjectionActivities.cancel_renewal,
                BudgetRelease(
                    enrollment_id=self.next_terms.enrollment_id,
                    program_code=self.next_terms.program.code if self.next_terms.program else "",
                    actor=SYSTEM,
                    reason=reason,
                ),
                start_to_close_timeout=LOCAL_TIMEOUT,
            )

    # --- Updates: nomination ----------------------------------------------------------------

    @workflow.update
    async def nominate(self, request: NominationRequest) -> StepResult:
        if request.village_code != self.inp.village_code:
            # Only reachable while the first nomination is still being recorded.
            raise ApplicationError(self._duplicate_message(), type="DuplicateNomination")
        if self.state is not None:
            # The same list sent again: nothing changes; a row its caller may not have written
            # yet (the first answer lost) is handed over again.
            return self._result(nomination=self.nomination_unconfirmed)
        record = NominationRecord(
            input=self.inp,
            workflow_id=workflow.info().workflow_id,
            run_id=workflow.info().run_id,
            occurred_at=workflow.now(),
        )
        if request.recorded_by_caller and self.inp.lean_steps:
            # The caller writes the row from the answer, a whole list in one transaction: no
            # local activity, one workflow activation and one marker fewer (BENCHMARKS.md).
            # Someone else holding the person's period is found by that write, which then
            # signals ``refuse_nomination``.
            self.state = State.NOMINATED
            self.seq = 1
            self.nomination_unconfirmed = record
            return self._result(nomination=record)
        await self._record_nomination(record)
        self.state = State.NOMINATED
        self.seq = 1
        return self._result()

    async def _record_nomination(self, record: NominationRecord) -> None:
        """Write the row; someone else holding the person's period makes this a duplicate."""
        outcome = await workflow.execute_local_activity_method(
            ProjectionActivities.record_nomination,
            record,
            start_to_close_timeout=LOCAL_TIMEOUT,
        )
        if not outcome.recorded:
            self.duplicate = outcome.refusal(self.inp.program.code)
            raise ApplicationError(
                self.duplicate,
                outcome.existing_enrollment_id,
                type="DuplicateNomination",
                non_retryable=True,
            )

    @workflow.signal
    def refuse_nomination(self, refusal: NominationRefusal) -> None:
        # Only a row nobody wrote can be refused: not once a step's caller found it, nor while
        # the workflow writes it itself (that write's own outcome decides).
        if (
            self.nomination_unconfirmed is not None
            and self.state == State.NOMINATED
            and not self.record_lock.locked()
        ):
            self.nomination_unconfirmed = None
            self.duplicate = refusal.reason
            self.refusal_kind = refusal.kind

    def _row_found(self, projected_seq: int) -> None:
        """A step's caller found the enrollment's row: the nomination needs no write of ours."""
        if projected_seq >= 1:
            self.nomination_unconfirmed = None

    @nominate.validator
    def _validate_nominate(self, request: NominationRequest) -> None:
        if self.duplicate is not None:
            raise ApplicationError(self.duplicate, type="DuplicateNomination")
        if self.state is not None and request.village_code != self.inp.village_code:
            raise ApplicationError(
                self._duplicate_message(), self.inp.enrollment_id, type="DuplicateNomination"
            )

    def _duplicate_message(self) -> str:
        return (
            f"already nominated for {self.inp.program.code} by village "
            f"{self.inp.village_code} as enrollment {self.inp.enrollment_id}"
        )

    # --- Updates: human steps ---------------------------------------------------------------

    @workflow.update
    async def verify(self, step: Verification) -> StepResult:
        self._row_found(step.projected_seq)
        if self._caller_records(step):
            if self.state == State.VERIFIED:
                # The same approval again while its record is still the caller's to write (its
                # first answer may have been lost): nothing changes, the record is handed over
                # again.
                return self._result(to_record=self.unrecorded)
            # The caller writes the record from the answer: no local activity, one workflow
            # activation and one marker fewer (BENCHMARKS.md). The step stays in
            # ``unrecorded`` as well, so it reaches the projection with the workflow's next
            # write even if the caller never writes it, unless the budget approval says the
            # projection holds it already.
            self._take_step(
                State.VERIFIED, "verified", step.actor, step.reason, changes=None, then=None
            )
            return self._result(to_record=self.unrecorded)
        with self._step("verify"):
            target = State.VERIFIED if step.approve else State.REJECTED
            await self._move(
                target, "verified" if step.approve else "rejected", step.actor, step.reason
            )
            return self._result()

    @verify.validator
    def _validate_verify(self, step: Verification) -> None:
        if self._caller_records(step) and self.state == State.VERIFIED:
            self._check_idle()
            return
        self._require(State.VERIFIED if step.approve else State.REJECTED)
        if not step.approve and not step.reason.strip():
            raise ApplicationError("a rejection needs a reason", type="StepRefused")

    def _caller_records(self, step: Verification) -> bool:
        """Whether this verification is written by its caller: only an approval (a rejection
        ends the workflow, which would take an unwritten record with it), and not while a record
        of the workflow's own is being written (the caller's could overtake it)."""
        # Runs from before lean steps keep the old path (and its search-attribute upsert).
        lean = self.inp.lean_steps and self.inp.budget_recorded_by_registration
        if not (lean and step.recorded_by_caller and step.approve) or self.record_lock.locked():
            return False
        if self.state == State.VERIFIED:
            # A repeat is answered only while the approval's own record is still pending.
            return any(t.action == "verified" for t in self.unrecorded)
        return True

    @workflow.update
    async def approve_budget(self, step: BudgetCommitment) -> StepResult:
        with self._step("approve_budget"):
            if self.state == State.RENEWAL_PENDING:
                self.next_budget = step
                await self._note(
                    "renewal_budget_approved",
                    step.reason,
                    actor=step.actor,
                    detail={
                        "funding_source": step.funding_source,
                        "amount_idr": str(step.amount_idr),
                    },
                )
                return self._result()
            # What the projection holds already (a verification its caller wrote) is not
            # written again by the registration.
            self._row_found(step.projected_seq)
            self.unrecorded = [t for t in self.unrecorded if t.seq > step.projected_seq]
            self.funding_source = step.funding_source
            changes = EnrollmentChanges(funding_source=step.funding_source)
            if self.inp.budget_recorded_by_registration:
                # The registration starts straight after the budget, and its activity writes
                # both steps before it calls BPJS: the Update answers at once, without a local
                # activity of its own (BENCHMARKS.md). Until then the projection shows
                # "verified"; the ledger already holds the commitment.
                self._take_step(
                    State.BUDGET_APPROVED,
                    "budget_approved",
                    step.actor,
                    step.reason,
                    changes=changes,
                    then=(State.REGISTERING, "registration_started"),
                )
                return self._result()
            # The registration starts straight after the budget: recorded together, the
            # decision and the system's step cost one local activity (BENCHMARKS.md).
            await self._move(
                State.BUDGET_APPROVED,
                "budget_approved",
                step.actor,
                step.reason,
                changes=changes,
                then=((State.REGISTERING, "registration_started") if self._lean_steps() else None),
            )
            return self._result()

    @approve_budget.validator
    def _validate_approve_budget(self, step: BudgetCommitment) -> None:
        self._check_idle()
        if self.state == State.RENEWAL_PENDING:
            terms = self.next_terms
            if terms is None or terms.program is None or terms.program.code != step.program_code:
                pending_for = terms.program.code if terms and terms.program else "no program"
                raise ApplicationError(
                    f"renewal is pending for {pending_for}, not {step.program_code}",
                    type="StepRefused",
                )
            if self.next_budget is not None:
                raise ApplicationError(
                    "next period's budget is already approved", type="StepRefused"
                )
            return
        if step.program_code != self.inp.program.code:
            raise ApplicationError(
                f"enrollment belongs to {self.inp.program.code}, not {step.program_code}",
                type="StepRefused",
            )
        self._require(State.BUDGET_APPROVED)

    @workflow.update
    async def withdraw(self, step: Withdrawal) -> StepResult:
        self._row_found(step.projected_seq)
        with self._step("withdraw"):
            # The state changes before any await, so the main line cannot start a registration.
            await self._move(State.WITHDRAWN, "withdrawn", step.actor, step.reason)
            await self._release_budget(f"withdrawn: {step.reason}")
            return self._result()

    @withdraw.validator
    def _validate_withdraw(self, step: Withdrawal) -> None:
        self._require(State.WITHDRAWN)
        if not step.reason.strip():
            raise ApplicationError("a withdrawal needs a reason", type="StepRefused")

    @workflow.update
    async def confirm_renewal(self, step: RenewalConfirmation) -> StepResult:
        with self._step("confirm_renewal"):
            self.renewal_confirmed = step.confirm
            await self._note(
                "renewal_confirmed" if step.confirm else "renewal_declined",
                step.reason,
                actor=step.actor,
            )
            return self._result()

    @confirm_renewal.validator
    def _validate_confirm_renewal(self, step: RenewalConfirmation) -> None:
        self._check_idle()
        if self.state != State.RENEWAL_PENDING:
            raise ApplicationError(
                f"enrollment is {self._state_name()}; renewal is not pending", type="StepRefused"
            )

    @workflow.update
    async def terminate(self, step: Termination) -> StepResult:
        with self._step("terminate"):
            self.terminated = step
            if self.kpj is not None:
                await workflow.execute_activity_method(
                    BpjsActivities.end_coverage,
                    CoverageEnd(
                        idempotency_key=f"{workflow.info().workflow_id}:{self.inp.program.code}:end",
                        kpj_number=self.kpj,
                        effective_date=step.effective_date,
                        reason=step.reason,
                    ),
                    start_to_close_timeout=BPJS_TIMEOUT,
                    retry_policy=BPJS_RETRY,
                )
            await self._close_renewal(f"terminated: {step.reason}")
            if self.coverage is not None:
                # The view follows the projection: coverage now ends on the effective date.
                self.coverage = (self.coverage[0], step.effective_date)
            await self._move(
                State.TERMINATED,
                "terminated",
                step.actor,
                f"{step.reason}: {step.note}".rstrip(": "),
                changes=EnrollmentChanges(coverage_end=step.effective_date),
            )
            return self._result()

    @terminate.validator
    def _validate_terminate(self, step: Termination) -> None:
        self._require(State.TERMINATED)
        if self.terminated is not None:
            raise ApplicationError("termination is already under way", type="StepRefused")
        if step.reason not in ("death", "left_office", "moved", "other"):
            raise ApplicationError(
                "reason must be death, left_office, moved or other", type="StepRefused"
            )
        terms = self.inp.program
        if not terms.period_start <= step.effective_date <= terms.period_end:
            raise ApplicationError(
                f"effective date must fall within {terms.period_start} to {terms.period_end}",
                type="StepRefused",
            )

    @workflow.update
    async def resubmit(self, step: Resubmission) -> StepResult:
        with self._step("resubmit"):
            if self.funding_source is None:
                raise ApplicationError("no funding source to commit again", type="StepRefused")
            await workflow.execute_local_activity_method(
                ProjectionActivities.recommit_budget,
                BudgetRecommit(
                    enrollment_id=self.inp.enrollment_id,
                    program_code=self.inp.program.code,
                    funding_source=self.funding_source,
                    amount_idr=self.inp.premium_idr,
                    actor=step.actor,
                ),
                start_to_close_timeout=LOCAL_TIMEOUT,
            )
            self.person = PersonData(
                nik=self.person.nik,
                full_name=step.full_name or self.person.full_name,
                birth_date=step.birth_date or self.person.birth_date,
                gender=step.gender or self.person.gender,
                phone=self.person.phone,
            )
            await self._move(
                State.REGISTERING,
                "resubmitted",
                step.actor,
                step.reason,
                changes=EnrollmentChanges(
                    full_name=step.full_name, birth_date=step.birth_date, gender=step.gender
                ),
            )
            return self._result()

    @resubmit.validator
    def _validate_resubmit(self, step: Resubmission) -> None:
        self._require(State.REGISTERING)
        period_end = self.inp.program.period_end
        if workflow.now() >= timing.end_of(period_end):
            # The main line stopped waiting: a step accepted now would commit budget again
            # for a registration nobody makes.
            raise ApplicationError(
                f"the period ended on {period_end}; a failed registration is no longer resubmitted",
                type="StepRefused",
            )
        if self.state != State.REGISTRATION_FAILED:
            raise ApplicationError(
                f"enrollment is {self._state_name()}; only a failed registration is resubmitted",
                type="StepRefused",
            )
        if not (step.full_name or step.birth_date or step.gender):
            raise ApplicationError(
                "a resubmission needs at least one correction", type="StepRefused"
            )

    # --- Queries ----------------------------------------------------------------------------

    @workflow.query
    def view(self) -> EnrollmentView:
        return EnrollmentView(
            enrollment_id=self.inp.enrollment_id,
            program=self.inp.program.code,
            state=self._state_name(),
            kpj_number=self.kpj,
            coverage_start=self.coverage[0] if self.coverage else None,
            coverage_end=self.coverage[1] if self.coverage else None,
            funding_source=self.funding_source,
            renewal_confirmed=self.renewal_confirmed,
            next_budget=self.next_budget.funding_source if self.next_budget else None,
            seq=self.seq,
        )

    # --- helpers ----------------------------------------------------------------------------

    def _lean_steps(self) -> bool:
        # Short-circuits: a run started with the flag never asks the patch (no marker, no upsert).
        return self.inp.lean_steps or workflow.patched(LEAN_STEPS)

    def _state_name(self) -> str:
        return self.state.value if self.state else "not nominated"

    def _result(
        self,
        *,
        to_record: list[Transition] | None = None,
        nomination: NominationRecord | None = None,
    ) -> StepResult:
        return StepResult(
            enrollment_id=self.inp.enrollment_id,
            state=self._state_name(),
            seq=self.seq,
            to_record=list(to_record or []),
            nomination=nomination,
        )

    @contextmanager
    def _step(self, name: str) -> Iterator[None]:
        self.step_in_progress = name
        try:
            yield
        finally:
            self.step_in_progress = None

    def _check_idle(self) -> None:
        if self.closing is not None:
            raise ApplicationError(f"{self.closing}; try again shortly", type="StepInProgress")
        if self.step_in_progress is not None:
            raise ApplicationError(
                f"another step ({self.step_in_progress}) is in progress; try again",
                type="StepInProgress",
            )

    def _require(self, target: State) -> None:
        if self.state is None:
            raise ApplicationError("enrollment is not nominated yet", type="StepRefused")
        self._check_idle()
        reason = refusal(self.state, target)
        if reason is not None:
            raise ApplicationError(reason, type="StepRefused")

    async def _move(
        self,
        target: State,
        action: str,
        actor: Actor,
        reason: str = "",
        *,
        changes: EnrollmentChanges | None = None,
        previous: State | None = None,
        then: tuple[State, str] | None = None,
    ) -> None:
        """Change state and record it; ``then`` is a system step that follows at once (the same
        record, one local activity for both)."""
        steps = self._change_state(target, action, actor, reason, changes, previous, then)
        await self._record(steps)
        # No search-attribute upsert per step: each cost the server a visibility write, a
        # quarter of its CPU per enrollment in the bench (BENCHMARKS.md); the projection answers
        # "which are verified" (GET /v1/enrollments?state=). Runs recorded before keep their
        # upserts on replay.
        if not self._lean_steps():
            workflow.upsert_search_attributes([sa.LEGACY_STATE.value_set(target.value)])

    def _take_step(
        self,
        target: State,
        action: str,
        actor: Actor,
        reason: str,
        *,
        changes: EnrollmentChanges | None,
        then: tuple[State, str] | None,
    ) -> None:
        """Change state now and leave its record to the next write (``self.unrecorded``)."""
        steps = self._change_state(target, action, actor, reason, changes, None, then)
        self.unrecorded += self._numbered(steps, workflow.now())

    def _numbered(self, steps: list[_Step], occurred_at: dt.datetime) -> list[Transition]:
        """The steps as transitions, each taking the next seq."""
        transitions = []
        for step in steps:
            self.seq += 1
            transitions.append(self._transition(step, seq=self.seq, occurred_at=occurred_at))
        return transitions

    def _change_state(
        self,
        target: State,
        action: str,
        actor: Actor,
        reason: str,
        changes: EnrollmentChanges | None,
        previous: State | None,
        then: tuple[State, str] | None,
    ) -> list[_Step]:
        before = previous or self.state or State.NOMINATED
        self.state = target
        steps = [_Step(action, actor, reason, before, target, changes)]
        if then is not None:
            self.state, then_action = then
            steps.append(_Step(then_action, SYSTEM, "", target, self.state))
        return steps

    async def _note(
        self,
        action: str,
        reason: str,
        *,
        actor: Actor = SYSTEM,
        detail: dict[str, str] | None = None,
    ) -> None:
        """An event without a state change (reminder, escalation, a renewal decision)."""
        current = self.state or State.NOMINATED
        await self._record([_Step(action, actor, reason, current, current, detail=detail)])

    def _transition(self, step: _Step, *, seq: int, occurred_at: dt.datetime) -> Transition:
        info = workflow.info()
        return Transition(
            enrollment_id=self.inp.enrollment_id,
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            seq=seq,
            action=step.action,
            actor=step.actor,
            state_before=step.before.value,
            state_after=step.after.value,
            occurred_at=occurred_at,
            reason=step.reason,
            human=step.actor.role != SYSTEM.role,
            changes=step.changes,
            detail=step.detail or {},
        )

    async def _record(self, steps: list[_Step]) -> None:
        occurred_at = workflow.now()
        async with self.record_lock:
            if self.nomination_unconfirmed is not None:
                # Nobody has shown the row exists (a reminder before any step, a step sent
                # around the API): written first, so the steps have a row to advance. Until
                # the write is done a repeat of the list still gets the row to write.
                await self._record_nomination(self.nomination_unconfirmed)
                self.nomination_unconfirmed = None
            # Steps taken earlier and not written yet go first: the projection takes them in order.
            transitions, self.unrecorded = self.unrecorded, []
            transitions += self._numbered(steps, occurred_at)
            await workflow.execute_local_activity_method(
                ProjectionActivities.record_transitions,
                transitions,
                start_to_close_timeout=LOCAL_TIMEOUT,
            )

    async def _release_budget(self, reason: str) -> None:
        if self.funding_source is None:
            return
        await workflow.execute_local_activity_method(
            ProjectionActivities.release_budget,
            BudgetRelease(
                enrollment_id=self.inp.enrollment_id,
                program_code=self.inp.program.code,
                actor=SYSTEM,
                reason=reason,
            ),
            start_to_close_timeout=LOCAL_TIMEOUT,
        )
