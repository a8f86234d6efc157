"""``EnrollmentWorkflow``: one person in one program period, from nomination to the end of coverage.

nominated -verify-> verified -budget-> budget_approved -> registering -> active -> renewal_pending
-> active (next period, continue-as-new) | lapsed. Human steps are Updates with validators, so
the caller learns at once whether a step was taken. Every step makes a ``Record`` (who, when,
why, and the enrollment's row as the step leaves it) and keeps it, so the run can always say
what the projection should hold (the ``records`` query). Records are written through one
recorder, in any order (the row keeps the newest): by the batch that sent a step, by a local
activity for a single step or the workflow's own steps, and by the registration activity for
the activation. Deadlines are durable timers; all I/O lives in activities.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain.records import SYSTEM, Commitment, Record, activated
    from domain.states import State, refusal
    from domain.worker_rows import ProgramRules, correction_errors, normal_name
    from workflows import timing
    from workflows.messages import (
        END_COVERAGE,
        EXTEND_PARTICIPANT,
        REGISTER_PARTICIPANT,
        BudgetApproval,
        CoverageEnd,
        EnrollmentInput,
        ExceptionResolution,
        ExtensionRequest,
        Nomination,
        RegistrationRequest,
        RegistrationResult,
        Renewal,
        RenewalTerms,
        Resubmission,
        StepResult,
        Termination,
        Verification,
        Withdrawal,
    )
    from workflows.record_keeping import budget_detail, refused
    from workflows.renewal import RenewalSteps

NOMINATION_GRACE = timedelta(hours=1)
TERMINATION_REASONS = ("death", "left_office", "moved", "other")
ATTENTION_LENGTH = 300
DUPLICATE_NOMINATION = "DuplicateNomination"
# A resubmission whose corrections break the domain's rules (the caller's 422, field by field).
INVALID_CORRECTION = "InvalidCorrection"


@workflow.defn
class EnrollmentWorkflow(RenewalSteps):
    @workflow.init
    def __init__(self, inp: EnrollmentInput) -> None:
        self.inp = inp
        self.person = inp.person
        # A renewed period starts where the previous one left it: renewal pending.
        self.state: State | None = State.RENEWAL_PENDING if inp.renewal else None
        self.seq = 0
        self._records: list[Record] = []
        self.nominated_at = workflow.now()
        self.kpj: str | None = inp.renewal.kpj_number if inp.renewal else None
        self.coverage: tuple[dt.date, dt.date] | None = None
        self.commitment: Commitment | None = inp.renewal.commitment if inp.renewal else None
        self.registration_attempt = 0
        self.renewal_confirmed = False
        self.next_terms: RenewalTerms | None = None
        self.next_commitment: Commitment | None = None
        self.terminated: Termination | None = None
        # An exception DPMD must resolve (BPJS refused a termination for good), shown on the
        # enrollment's row until someone resolves it.
        self.attention: str | None = None
        self.resolution: ExceptionResolution | None = None
        # A human step writing its records: the next one waits its turn (its validator refuses
        # it), so two steps never interleave at their awaits.
        self.step_in_progress: str | None = None
        # Set while the workflow itself changes period (renewal, lapse): human steps wait.
        self.closing: str | None = None

    # --- the main line --------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: EnrollmentInput) -> str:
        if inp.renewal is not None:
            await self._start_renewed_period(inp.renewal)
        else:
            try:
                await workflow.wait_condition(
                    lambda: self.state is not None, timeout=NOMINATION_GRACE
                )
            except TimeoutError:
                raise ApplicationError("started without a nomination", non_retryable=True) from None
            await self._await_verification()
            await workflow.wait_condition(lambda: self.state != State.VERIFIED)
            while self.state == State.REGISTERING:
                await self._register()
                if self.state == State.REGISTRATION_FAILED:
                    await self._await_resubmission()
        if self.state in (State.ACTIVE, State.RENEWAL_PENDING):
            await self._cover()
        if self.terminated is not None:
            await self._end_at_bpjs(self.terminated)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state_name()

    async def _await_verification(self) -> None:
        """Reminder, escalation and (where the program says so) expiry while nobody verifies."""
        terms = self.inp.program
        started = workflow.now()
        stages = [
            (terms.verification_reminder_days, "verification_reminder"),
            (terms.verification_deadline_days, "verification_escalated"),
        ]
        if terms.verification_expiry_days is not None:
            stages.append((terms.verification_expiry_days, "verification_expired"))
        for days, action in sorted(stages):
            left = timing.until(started + timedelta(days=days), workflow.now())
            try:
                await workflow.wait_condition(lambda: self.state != State.NOMINATED, timeout=left)
                return
            except TimeoutError:
                if action == "verification_expired":
                    reason = "verification deadline passed"
                    await self._write([self._take(State.EXPIRED, action, SYSTEM, reason)])
                    return
                await self._write([self._note(action, f"not verified after {days} days")])
        await workflow.wait_condition(lambda: self.state != State.NOMINATED)

    async def _register(self) -> None:
        self.registration_attempt += 1
        self.closing = "the registration at BPJS is under way"
        activation = self._draft(State.ACTIVE, "activated", SYSTEM)
        try:
            result = await self._at_bpjs(
                REGISTER_PARTICIPANT, self._registration_request(activation)
            )
        except ActivityError as err:
            self.closing = None
            kind, message, details = _failure(err)
            if kind == "AlreadyRegistered":
                self.kpj = str(details[0]) if details else None
                released, self.commitment = self.commitment, None
                record = self._take(State.ALREADY_COVERED, "already_covered", SYSTEM, message)
                await self._write([record], release=released)
            else:
                # The budget stays committed while DPMD corrects the data (``resubmit``).
                failed = self._take(
                    State.REGISTRATION_FAILED, "registration_failed", SYSTEM, message
                )
                await self._write([failed])
            return
        self.closing = None
        self.kpj = result.kpj_number
        self.coverage = (result.coverage_start, result.coverage_end)
        if result.activation_written_at is None:  # an adapter that records nothing: here
            await self._write([self._take(State.ACTIVE, "activated", SYSTEM)])
            return
        # Written by the activity: the run keeps the same record.
        self._records.append(
            activated(
                activation,
                kpj_number=result.kpj_number,
                coverage_start=result.coverage_start,
                coverage_end=result.coverage_end,
                at=result.activation_written_at,
            )
        )
        self.seq = activation.snapshot.seq
        self.state = State.ACTIVE

    def _registration_request(self, activation: Record) -> RegistrationRequest:
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
        )

    async def _await_resubmission(self) -> None:
        """A failed registration waits for corrected data or withdrawal until the period ends;
        then its budget goes back."""
        left = timing.until(timing.end_of(self.inp.program.period_end), workflow.now())
        try:
            await workflow.wait_condition(
                lambda: self.state != State.REGISTRATION_FAILED, timeout=left
            )
        except TimeoutError:
            released, self.commitment = self.commitment, None
            note = self._note("resubmission_window_closed", "the period ended")
            await self._write([note], release=released)

    async def _start_renewed_period(self, renewal: Renewal) -> None:
        terms = self.inp.program
        self.closing = "the enrollment is moving into its next period"
        try:
            result = await self._at_bpjs(
                EXTEND_PARTICIPANT,
                ExtensionRequest(
                    idempotency_key=f"{workflow.info().workflow_id}:{terms.code}:extend",
                    kpj_number=renewal.kpj_number,
                    period_start=terms.period_start,
                    period_end=terms.period_end,
                ),
            )
        except ActivityError as err:
            # BPJS refused the extension for good: the new period never starts.
            self.closing = None
            _, message, _ = _failure(err)
            released, self.commitment = self.commitment, None
            reason = f"BPJS refused the extension: {message}"
            record = self._take(State.LAPSED, "renewal_failed", SYSTEM, reason)
            await self._write([record], release=released)
            return
        self.closing = None
        self.coverage = (result.coverage_start, result.coverage_end)
        reason = f"continues {renewal.previous_enrollment_id}"
        await self._write([self._take(State.ACTIVE, "renewed", SYSTEM, reason)])

    async def _cover(self) -> None:
        """Coverage until the period ends: renewal window, then renewal or lapse."""
        terms = self.inp.program
        if await self._terminated_before(
            timing.renewal_opens(terms.period_end, terms.renewal_lead_days)
        ):
            return
        if self.state == State.ACTIVE:
            await self._open_renewal()
        if await self._terminated_before(timing.end_of(terms.period_end)):
            return
        # From here the period closes (renewal or lapse); no human step may interleave.
        await workflow.wait_condition(lambda: self.step_in_progress is None)
        if self.terminated is None:  # a termination may land just before the period ends
            await self._close_period()

    async def _terminated_before(self, moment: dt.datetime) -> bool:
        try:
            await workflow.wait_condition(
                lambda: self.terminated is not None,
                timeout=timing.until(moment, workflow.now()),
            )
        except TimeoutError:
            return False
        return True

    async def _end_at_bpjs(self, step: Termination) -> None:
        """A termination is taken when DPMD reports it; BPJS is told afterwards, retried. A
        refusal that retrying cannot fix stays open on the enrollment (``attention``) until DPMD
        resolves it: tell BPJS again, or close it as settled by hand."""
        if self.kpj is None:
            return
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._at_bpjs(
                    END_COVERAGE,
                    CoverageEnd(
                        idempotency_key=f"{workflow.info().workflow_id}:"
                        f"{self.inp.program.code}:end:{attempt}",
                        kpj_number=self.kpj,
                        effective_date=step.effective_date,
                        reason=step.reason,
                    ),
                )
            except ActivityError as err:
                _, message, _ = _failure(err)
                self.attention = f"BPJS refused the termination: {message}"[:ATTENTION_LENGTH]
                await self._write([self._note("bpjs_refused_termination", message)])
                await workflow.wait_condition(lambda: self.resolution is not None)
                resolution, self.resolution = self.resolution, None
                if resolution is not None and resolution.retry:
                    continue
                return
            await self._write([self._note("coverage_ended_at_bpjs", f"from {step.effective_date}")])
            return

    async def _at_bpjs(self, activity: str, request: Any) -> Any:
        """A call to BPJS. Transient failures retry with backoff, for as long as it takes; what
        retrying cannot fix (NIK unknown to the population registry, already registered) ends
        it at once. A worker that died mid-call is noticed once the call's deadline passed."""
        timing = self.inp.bpjs
        return await workflow.execute_activity(
            activity,
            request,
            result_type=None if activity == END_COVERAGE else RegistrationResult,
            start_to_close_timeout=timedelta(seconds=timing.call_timeout_s),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=1),
                backoff_coefficient=2.0,
                maximum_interval=timedelta(seconds=timing.max_backoff_s),
                non_retryable_error_types=["NikUnknown", "AlreadyRegistered", "InvalidParticipant"],
            ),
        )

    # --- Updates ----------------------------------------------------------------------------

    @workflow.update
    async def nominate(self, step: Nomination) -> StepResult:
        if self.state is not None:
            # The same village's list again: its nomination's record, for the sender to write.
            return self._result(self._records[:1])
        self.nominated_at = workflow.now()
        detail = {"village_code": self.inp.village_code, "category": self.inp.category}
        record = self._take(State.NOMINATED, "nominated", step.actor, "", detail, step.batch_id)
        return await self._answer(step.batch_id, [record])

    @nominate.validator
    def _validate_nominate(self, step: Nomination) -> None:
        if step.program_code != self.inp.program.code:
            raise refused(f"this person's enrollment continues in {self.inp.program.code}")
        if self.state is not None and step.village_code != self.inp.village_code:
            # Whose nomination holds the person is for DPMD (the batch queues the conflict),
            # not for the other village: the details name the holder, the message does not.
            raise ApplicationError(
                "already nominated elsewhere in this period",
                self.inp.village_code,
                type=DUPLICATE_NOMINATION,
            )

    @workflow.update
    async def verify(self, step: Verification) -> StepResult:
        taken = self._taken_by(step.batch_id)
        if taken:
            return self._result(taken)
        target, action = (
            (State.VERIFIED, "verified") if step.approve else (State.REJECTED, "rejected")
        )
        record = self._take(target, action, step.actor, step.reason, batch_id=step.batch_id)
        return await self._answer(step.batch_id, [record])

    @verify.validator
    def _validate_verify(self, step: Verification) -> None:
        if self._taken_by(step.batch_id):
            return
        self._require(State.VERIFIED if step.approve else State.REJECTED)
        if not step.approve and not step.reason.strip():
            raise refused("a rejection needs a reason")

    @workflow.update
    def approve_budget(self, step: BudgetApproval) -> StepResult:
        commitment = step.commitment
        taken = self._taken_by(commitment.approval_id)
        if taken:
            return self._result(taken)
        batch = commitment.approval_id
        if self.state == State.RENEWAL_PENDING:
            self.next_commitment = commitment
            return self._result(
                [self._reservation("renewal_budget_approved", step.actor, step.reason, batch)]
            )
        # The registration starts at once: both steps, for the approval's batch to write.
        self.commitment = commitment
        approved = self._take(
            State.BUDGET_APPROVED,
            "budget_approved",
            step.actor,
            step.reason,
            budget_detail(commitment),
            batch,
        )
        started = self._take(State.REGISTERING, "registration_started", SYSTEM, batch_id=batch)
        return self._result([approved, started])

    @approve_budget.validator
    def _validate_approve_budget(self, step: BudgetApproval) -> None:
        commitment = step.commitment
        if self._taken_by(commitment.approval_id):
            return
        self._check_idle()
        if self.state == State.RENEWAL_PENDING:
            terms = self.next_terms
            pending_for = terms.program.code if terms and terms.program else None
            if pending_for != commitment.program_code:
                raise refused(
                    f"renewal is pending for {pending_for or 'no program'}, "
                    f"not {commitment.program_code}"
                )
            if self.next_commitment is not None:
                raise refused("next period's budget is already approved")
            return
        if commitment.program_code != self.inp.program.code:
            raise refused(
                f"enrollment belongs to {self.inp.program.code}, not {commitment.program_code}"
            )
        self._require(State.BUDGET_APPROVED)

    @workflow.update
    async def withdraw(self, step: Withdrawal) -> StepResult:
        released, self.commitment = self.commitment, None
        record = self._take(State.WITHDRAWN, "withdrawn", step.actor, step.reason)
        return await self._answer(None, [record], released)

    @withdraw.validator
    def _validate_withdraw(self, step: Withdrawal) -> None:
        self._require(State.WITHDRAWN)
        if not step.reason.strip():
            raise refused("a withdrawal needs a reason")

    @workflow.update
    async def terminate(self, step: Termination) -> StepResult:
        """Taken at once: coverage ends on the effective date here and now; the main line tells
        BPJS afterwards (``_end_at_bpjs``)."""
        self.terminated = step
        if self.coverage is not None:
            self.coverage = (self.coverage[0], step.effective_date)
        reason = f"{step.reason}: {step.note}".rstrip(": ")
        self.step_in_progress = "terminate"
        try:
            record = self._take(State.TERMINATED, "terminated", step.actor, reason)
            await self._close_renewal([record], f"terminated: {step.reason}")
        finally:
            self.step_in_progress = None
        return self._result([record])

    @terminate.validator
    def _validate_terminate(self, step: Termination) -> None:
        self._require(State.TERMINATED)
        if step.reason not in TERMINATION_REASONS:
            raise refused(f"reason must be one of {', '.join(TERMINATION_REASONS)}")
        terms = self.inp.program
        if not terms.period_start <= step.effective_date <= terms.period_end:
            raise refused(
                f"effective date must fall within {terms.period_start} to {terms.period_end}"
            )

    @workflow.update
    async def resolve_exception(self, step: ExceptionResolution) -> StepResult:
        """DPMD resolves the open exception: the main line tells BPJS again, or closes it."""
        self.attention = None
        action = "exception_retried" if step.retry else "exception_closed"
        self.step_in_progress = action
        try:
            record = self._note(action, step.note, actor=step.actor)
            await self._write([record])
        finally:
            self.step_in_progress = None
        self.resolution = step
        return self._result([record])

    @resolve_exception.validator
    def _validate_resolve_exception(self, step: ExceptionResolution) -> None:
        self._check_idle()
        if self.attention is None:
            raise refused("this enrollment has no open exception")
        if not step.note.strip():
            raise refused("resolving an exception needs a note")

    @workflow.update
    async def resubmit(self, step: Resubmission) -> StepResult:
        self.person = dataclasses.replace(
            self.person,
            full_name=normal_name(step.full_name or self.person.full_name),
            birth_date=step.birth_date or self.person.birth_date,
            gender=step.gender or self.person.gender,
        )
        corrected = {
            name: "corrected"
            for name in ("full_name", "birth_date", "gender")
            if getattr(step, name) is not None
        }
        record = self._take(State.REGISTERING, "resubmitted", step.actor, step.reason, corrected)
        return await self._answer(None, [record])

    @resubmit.validator
    def _validate_resubmit(self, step: Resubmission) -> None:
        self._require(State.REGISTERING)
        period_end = self.inp.program.period_end
        if workflow.now() >= timing.end_of(period_end):
            raise refused(
                f"the period ended on {period_end}; a failed registration is no longer resubmitted"
            )
        if self.state != State.REGISTRATION_FAILED:
            raise refused(
                f"enrollment is {self._state_name()}; only a failed registration is resubmitted"
            )
        if not (step.full_name or step.birth_date or step.gender):
            raise refused("a resubmission needs at least one correction")
        terms = self.inp.program
        errors = correction_errors(
            self.person.nik,
            full_name=normal_name(step.full_name or self.person.full_name),
            birth_date=step.birth_date or self.person.birth_date,
            gender=step.gender or self.person.gender,
            rules=ProgramRules(terms.period_start, terms.period_end, terms.max_age),
        )
        if errors:
            raise ApplicationError(
                "; ".join(f"{e.field}: {e.message}" for e in errors),
                *[{"field": e.field, "message": e.message} for e in errors],
                type=INVALID_CORRECTION,
            )

    # --- step rules -------------------------------------------------------------------------

    def _require(self, target: State) -> None:
        if self.state is None:
            raise refused("enrollment is not nominated yet")
        self._check_idle()
        reason = refusal(self.state, target)
        if reason is not None:
            raise refused(reason)


def _failure(err: ActivityError) -> tuple[str | None, str, tuple[Any, ...]]:
    """The failure's type, message and details, from what the activity raised."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return cause.type, cause.message, tuple(cause.details)
    return None, str(err), ()
