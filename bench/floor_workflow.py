"""The engine's floor: a bare workflow of an enrollment's shape, with no-op bodies.

A start with an Update (the nomination, as update-with-start), two more Updates (verification,
budget approval), one activity (the BPJS registration), one local activity (the projection write
of the activation) and a timer that keeps it open, as an active enrollment waits for its renewal.
Nothing else: no projection, no audit, no search attributes, no codec work beyond the converter's.

The variants after it are the floor plus one of rentan's extras each, for ``bench.extras``,
which measures what an extra costs the server and the worker. Kept import-pure: the workflow
sandbox re-imports this module.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import activity, workflow

FLOOR_TASK_QUEUE = "rentan-bench-floor"
COVERAGE_WAIT = timedelta(days=90)
ACTIVITY_TIMEOUT = timedelta(seconds=15)
REMINDER_WAIT = timedelta(days=7)  # rentan's verification reminder (the programs' default)


@activity.defn(name="floor_register")
async def floor_register(workflow_id: str) -> str:
    return workflow_id


@activity.defn(name="floor_note")
def floor_note(workflow_id: str) -> None:
    """The variants' extra local activity: nothing to write."""


class _Lifecycle:
    """The budget approval, an Update that only counts, and what follows the three steps."""

    def __init__(self) -> None:
        self.steps = 0

    async def _registered(self, workflow_id: str) -> None:
        """The rest of the lifecycle once the three steps are in."""
        await workflow.wait_condition(lambda: self.steps >= 3)
        await workflow.execute_activity(
            floor_register, workflow_id, start_to_close_timeout=ACTIVITY_TIMEOUT
        )
        await workflow.execute_local_activity(
            "floor_record", workflow_id, start_to_close_timeout=ACTIVITY_TIMEOUT
        )
        await workflow.sleep(COVERAGE_WAIT)

    @workflow.update
    def approve_budget(self, _: str) -> int:
        self.steps += 1
        return self.steps

    async def _noted(self, workflow_id: str) -> int:
        """A step that runs a local activity before it answers (where rentan writes its record)."""
        await workflow.execute_local_activity(
            "floor_note", workflow_id, start_to_close_timeout=ACTIVITY_TIMEOUT
        )
        self.steps += 1
        return self.steps


class _BareNomination(_Lifecycle):
    @workflow.update
    def nominate(self, _: str) -> int:
        self.steps += 1
        return self.steps


class _BareVerification(_Lifecycle):
    @workflow.update
    def verify(self, _: str) -> int:
        self.steps += 1
        return self.steps


class _BareSteps(_BareNomination, _BareVerification):
    """Every human step an Update that only counts."""


@workflow.defn(name="RentanFloor")
class FloorWorkflow(_BareSteps):
    @workflow.run
    async def run(self, workflow_id: str) -> None:
        await self._registered(workflow_id)


@workflow.defn(name="RentanFloorWithReminder")
class FloorWithReminder(_BareSteps):
    """Plus rentan's verification reminder: a timer started at nomination and cancelled by the
    verification, as ``EnrollmentWorkflow._await_verification`` does."""

    @workflow.run
    async def run(self, workflow_id: str) -> None:
        await workflow.wait_condition(lambda: self.steps >= 1)
        # Not within a run: the verification comes first and cancels the timer.
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self.steps >= 2, timeout=REMINDER_WAIT)
        await self._registered(workflow_id)


@workflow.defn(name="RentanFloorWithVerificationRecord")
class FloorWithVerificationRecord(_BareNomination):
    """Plus a local activity in the verification's Update before it answers, where rentan writes
    the verifier's decision (the body does nothing)."""

    @workflow.run
    async def run(self, workflow_id: str) -> None:
        await self._registered(workflow_id)

    @workflow.update
    async def verify(self, workflow_id: str) -> int:
        return await self._noted(workflow_id)


@workflow.defn(name="RentanFloorWithNominationRecord")
class FloorWithNominationRecord(_BareVerification):
    """Plus a local activity in the nomination's Update (the update-with-start), where rentan
    writes the enrollment's row, the person and the first audit entry."""

    @workflow.run
    async def run(self, workflow_id: str) -> None:
        await self._registered(workflow_id)

    @workflow.update
    async def nominate(self, workflow_id: str) -> int:
        return await self._noted(workflow_id)


FLOOR_WORKFLOWS = [
    FloorWorkflow,
    FloorWithReminder,
    FloorWithVerificationRecord,
    FloorWithNominationRecord,
]
