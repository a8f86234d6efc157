"""The engine's floor: a bare workflow of an enrollment's shape, with no-op bodies.

A start with an Update (the nomination, as update-with-start), two more Updates (verification,
budget approval), one activity (the BPJS registration), one local activity (the projection write
of the activation) and a timer that keeps it open, as an active enrollment waits for its renewal.
Nothing else: no projection, no audit, no search attributes, no codec work beyond the converter's.

Kept import-pure: the workflow sandbox re-imports this module.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

FLOOR_TASK_QUEUE = "rentan-bench-floor"
COVERAGE_WAIT = timedelta(days=90)
ACTIVITY_TIMEOUT = timedelta(seconds=15)


@activity.defn(name="floor_register")
async def floor_register(workflow_id: str) -> str:
    return workflow_id


@workflow.defn(name="RentanFloor")
class FloorWorkflow:
    """Every human step an Update that only counts; the rest follows the three steps."""

    def __init__(self) -> None:
        self.steps = 0

    @workflow.run
    async def run(self, workflow_id: str) -> None:
        await workflow.wait_condition(lambda: self.steps >= 3)
        await workflow.execute_activity(
            floor_register, workflow_id, start_to_close_timeout=ACTIVITY_TIMEOUT
        )
        await workflow.execute_local_activity(
            "floor_record", workflow_id, start_to_close_timeout=ACTIVITY_TIMEOUT
        )
        await workflow.sleep(COVERAGE_WAIT)

    @workflow.update
    def nominate(self, _: str) -> int:
        self.steps += 1
        return self.steps

    @workflow.update
    def verify(self, _: str) -> int:
        self.steps += 1
        return self.steps

    @workflow.update
    def approve_budget(self, _: str) -> int:
        self.steps += 1
        return self.steps


FLOOR_WORKFLOWS = [FloorWorkflow]
