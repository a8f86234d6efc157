"""The end of an enrollment's period: the renewal window, then the next period or a lapse.

Part of ``EnrollmentWorkflow`` (its base): when the window opens, the next period is claimed
for this person and reserved (the successor program's enrollment row, in ``renewal_pending``);
the village confirms the person still serves (``confirm_renewal``) and a budget officer funds
the next period; at the period's end the run continues as new into the next period, or lapses
and gives the next period back (its reservation, claim and budget).
"""

from __future__ import annotations

import dataclasses

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.records import SYSTEM, Record
    from domain.states import State
    from workflows import search_attributes as sa
    from workflows.messages import (
        OPEN_RENEWAL,
        PeriodRelease,
        Renewal,
        RenewalConfirmation,
        RenewalOpening,
        RenewalTerms,
        StepResult,
        Termination,
    )
    from workflows.record_keeping import LOCAL_TIMEOUT, RecordKeeping, refused


class RenewalSteps(RecordKeeping):
    renewal_confirmed: bool
    terminated: Termination | None
    closing: str | None

    async def _open_renewal(self) -> None:
        """Claim and reserve the next period, where there is one."""
        self.next_terms = await workflow.execute_local_activity(
            OPEN_RENEWAL,
            RenewalOpening(
                successor=self.inp.program.successor,
                person_key=self.inp.person_key,
                declared_income_idr=self.inp.declared_income_idr,
                workflow_id=workflow.info().workflow_id,
            ),
            result_type=RenewalTerms,
            start_to_close_timeout=LOCAL_TIMEOUT,
        )
        reason = self.next_terms.refusal or f"next period: {self.next_terms.enrollment_id}"
        opened = [self._take(State.RENEWAL_PENDING, "renewal_window_opened", SYSTEM, reason)]
        if self.next_terms.program is not None:
            opened.append(self._reservation("renewal_reserved", SYSTEM))
        await self._write(opened)

    async def _close_period(self) -> None:
        """Into the next period when it is confirmed and funded; otherwise a lapse."""
        self.closing = "the period is closing"
        nxt, funded = self.next_terms, self.next_commitment
        if nxt and nxt.program and nxt.enrollment_id and self.renewal_confirmed and funded:
            await self._write([self._take(State.ACTIVE, "period_completed", SYSTEM, "renewed")])
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(
                dataclasses.replace(
                    self.inp,
                    enrollment_id=nxt.enrollment_id,
                    program=nxt.program,
                    person=self.person,
                    premium_idr=funded.amount_idr,
                    renewal=Renewal(self.inp.enrollment_id, self.kpj or "", funded),
                ),
                search_attributes=sa.for_enrollment(
                    nxt.program.code,
                    self.inp.village_code,
                    self.inp.district_code,
                    self.inp.category,
                ),
            )
        missing = ", ".join(
            what
            for what, ok in (
                ("village confirmation", self.renewal_confirmed),
                ("budget for the next period", funded is not None),
                ("a successor program", nxt is not None and nxt.program is not None),
            )
            if not ok
        )
        lapsed = self._take(State.LAPSED, "lapsed", SYSTEM, f"period ended without {missing}")
        await self._close_renewal([lapsed], f"lapsed without {missing}")

    async def _close_renewal(self, records: list[Record], reason: str) -> None:
        """Write ``records`` with the next period given back: its reservation, claim and budget."""
        nxt, released = self.next_terms, self.next_commitment
        unclaim = None
        if nxt is not None and nxt.program is not None:
            records = [*records, self._reservation("renewal_cancelled", SYSTEM, reason, lapse=True)]
            unclaim = PeriodRelease(
                nxt.program.code, self.inp.person_key, workflow.info().workflow_id
            )
        self.next_terms = self.next_commitment = None
        await self._write(records, release=released, unclaim=unclaim)

    @workflow.update
    async def confirm_renewal(self, step: RenewalConfirmation) -> StepResult:
        self.renewal_confirmed = step.confirm
        action = "renewal_confirmed" if step.confirm else "renewal_declined"
        return await self._answer(None, [self._note(action, step.reason, actor=step.actor)])

    @confirm_renewal.validator
    def _validate_confirm_renewal(self, step: RenewalConfirmation) -> None:
        self._check_idle()
        if self.state != State.RENEWAL_PENDING:
            raise refused(f"enrollment is {self._state_name()}; renewal is not pending")
