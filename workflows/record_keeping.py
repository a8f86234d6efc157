"""What an enrollment's run knows of itself, and the records it makes of its steps.

``RecordKeeping`` is the part of ``EnrollmentWorkflow`` that turns a step into a ``Record``:
the next seq of the run, who and why, and the enrollment's row as the step leaves it (its
snapshot). Each record is kept for the ``records`` query, so the run can always rebuild what the
projection should hold of it. Deterministic: it reads only the workflow's own state,
``workflow.info()`` and ``workflow.now()``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain.nik import mask
    from domain.records import SYSTEM, Actor, Commitment, Record, Snapshot
    from domain.states import State
    from workflows.messages import (
        RECORD_STEPS,
        EnrollmentInput,
        EnrollmentView,
        PeriodRelease,
        PersonData,
        RecordBatch,
        RenewalTerms,
        StepResult,
    )

LOCAL_TIMEOUT = timedelta(seconds=30)


def refused(message: str) -> ApplicationError:
    return ApplicationError(message, type="StepRefused")


class RecordKeeping:
    """The enrollment's facts that its records show, and the making of those records."""

    inp: EnrollmentInput
    person: PersonData
    state: State | None
    seq: int
    _records: list[Record]
    nominated_at: dt.datetime
    kpj: str | None
    coverage: tuple[dt.date, dt.date] | None
    commitment: Commitment | None
    next_terms: RenewalTerms | None
    next_commitment: Commitment | None
    step_in_progress: str | None
    closing: str | None
    renewal_confirmed: bool
    attention: str | None

    # --- Queries: the truth the projection follows ------------------------------------------

    @workflow.query
    def view(self) -> EnrollmentView:
        return EnrollmentView(
            enrollment_id=self.inp.enrollment_id,
            program=self.inp.program.code,
            state=self._state_name(),
            seq=self.seq,
            kpj_number=self.kpj,
            coverage_start=self.coverage[0] if self.coverage else None,
            coverage_end=self.coverage[1] if self.coverage else None,
            commitment=self.commitment,
            next_commitment=self.next_commitment,
            renewal_confirmed=self.renewal_confirmed,
        )

    @workflow.query
    def records(self) -> list[Record]:
        """Every record this run made, in seq order: what the projection must hold of it."""
        return list(self._records)

    # --- making records -------------------------------------------------------------------

    def _check_idle(self) -> None:
        busy = self.closing or (
            f"another step ({self.step_in_progress}) is in progress"
            if self.step_in_progress
            else None
        )
        if busy:
            raise ApplicationError(f"{busy}; try again shortly", type="StepInProgress")

    def _state_name(self) -> str:
        return self.state.value if self.state else "not nominated"

    def _result(self, records: list[Record]) -> StepResult:
        return StepResult(self.inp.enrollment_id, self._state_name(), list(records))

    async def _answer(
        self, batch_id: str | None, records: list[Record], released: Commitment | None = None
    ) -> StepResult:
        """A batch writes what the Update answers; a single step is written before it answers."""
        if batch_id is None:
            self.step_in_progress = records[0].action
            try:
                await self._write(records, release=released)
            finally:
                self.step_in_progress = None
        return self._result(records)

    def _taken_by(self, batch_id: str | None) -> list[Record]:
        """The records a batch's step made already (the batch sent it again)."""
        if batch_id is None:
            return []
        return [r for r in self._records if r.detail.get("batch") == batch_id]

    def _draft(
        self,
        target: State,
        action: str,
        actor: Actor,
        reason: str = "",
        detail: dict[str, str] | None = None,
        batch_id: str | None = None,
    ) -> Record:
        """The record of a step to ``target`` taken next, without taking it."""
        before = self.state
        snapshot = self._snapshot(self.seq + 1, target)
        extra = {"batch": batch_id} if batch_id else {}
        return Record(
            snapshot,
            action,
            actor,
            before.value if before else None,
            reason,
            {**(detail or {}), **extra},
        )

    def _take(
        self,
        target: State,
        action: str,
        actor: Actor,
        reason: str = "",
        detail: dict[str, str] | None = None,
        batch_id: str | None = None,
    ) -> Record:
        """Move to ``target`` and keep the step's record (the row as the step leaves it)."""
        record = self._draft(target, action, actor, reason, detail, batch_id)
        self.state = target
        self.seq += 1
        self._records.append(record)
        return record

    def _note(self, action: str, reason: str, *, actor: Actor = SYSTEM) -> Record:
        """A step that changes no state (a reminder, a renewal decision)."""
        return self._take(self.state or State.NOMINATED, action, actor, reason)

    def _reservation(
        self,
        action: str,
        actor: Actor,
        reason: str = "",
        batch_id: str | None = None,
        *,
        lapse: bool = False,
    ) -> Record:
        """A record of the next period's enrollment, reserved by this run for the renewal."""
        terms = self.next_terms
        assert terms is not None and terms.program is not None and terms.enrollment_id
        state = State.LAPSED if lapse else State.RENEWAL_PENDING
        funded = None if lapse else self.next_commitment
        self.seq += 1
        snapshot = dataclasses.replace(
            self._snapshot(self.seq, state),
            enrollment_id=terms.enrollment_id,
            program_code=terms.program.code,
            premium_idr=terms.premium_idr,
            funding_source=funded.funding_source if funded else None,
            kpj_number=None,
            coverage_start=None,
            coverage_end=None,
            nominated_at=workflow.now(),
        )
        detail = budget_detail(funded) if funded else {}
        if batch_id:
            detail["batch"] = batch_id
        record = Record(snapshot, action, actor, State.RENEWAL_PENDING.value, reason, detail)
        self._records.append(record)
        return record

    def _snapshot(self, seq: int, state: State) -> Snapshot:
        info = workflow.info()
        inp, person = self.inp, self.person
        return Snapshot(
            enrollment_id=inp.enrollment_id,
            program_code=inp.program.code,
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            run_started_at=info.workflow_start_time,
            seq=seq,
            state=state.value,
            person_key=inp.person_key,
            nik_masked=mask(person.nik),
            full_name=person.full_name,
            birth_date=person.birth_date,
            gender=person.gender,
            phone=person.phone,
            village_code=inp.village_code,
            district_code=inp.district_code,
            category=inp.category,
            declared_income_idr=inp.declared_income_idr,
            premium_idr=inp.premium_idr,
            funding_source=self.commitment.funding_source if self.commitment else None,
            kpj_number=self.kpj,
            coverage_start=self.coverage[0] if self.coverage else None,
            coverage_end=self.coverage[1] if self.coverage else None,
            nominated_by=inp.nominated_by.name,
            nominated_at=self.nominated_at,
            updated_at=workflow.now(),
            attention=self.attention,
        )

    async def _write(
        self,
        records: list[Record],
        *,
        release: Commitment | None = None,
        unclaim: PeriodRelease | None = None,
    ) -> None:
        """Write records, with the commitment their step gives back and the claim it gives up,
        in one transaction (a local activity)."""
        await workflow.execute_local_activity(
            RECORD_STEPS,
            RecordBatch(records, [release] if release else [], unclaim),
            start_to_close_timeout=LOCAL_TIMEOUT,
        )


def budget_detail(commitment: Commitment) -> dict[str, str]:
    return {
        "approval_id": commitment.approval_id,
        "funding_source": commitment.funding_source,
        "amount_idr": str(commitment.amount_idr),
    }
