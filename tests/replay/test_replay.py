"""Determinism guard: histories recorded from real runs must replay on today's workflow code.

A change to ``EnrollmentWorkflow`` that would break running enrollments (a new activity, timer
or command on an existing path, another order) fails here. ``histories/`` holds one recording
of each path through the lifecycle, made by ``record_histories.py`` from version 0.2.0's code
and encrypted with the test payload key (``tests.conftest.TEST_PAYLOAD_KEY``). How to change
workflow code safely: README, "Changing workflow code".
"""

from __future__ import annotations

from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from core.temporal import data_converter
from tests.conftest import test_settings
from worker import SANDBOX_RESTRICTIONS, WORKFLOWS

HISTORIES = Path(__file__).parent / "histories"
PATHS = (
    "renewed",
    "rejected-nominated-again",
    "expired",
    "registration-failed-withdrawn",
    "terminated",
    "lapsed",
    "already-covered",
    "batch-NominationListWorkflow",
    "batch-VerificationBatchWorkflow",
    "batch-BudgetApprovalWorkflow",
)


def recorded() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


async def test_recorded_histories_replay_on_current_code(tmp_path: Path) -> None:
    files = recorded()
    for path in PATHS:
        assert any(f.name.startswith(f"{path}-run") for f in files), f"no history of {path}"
    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=data_converter(test_settings(tmp_path)),
        workflow_runner=SandboxedWorkflowRunner(restrictions=SANDBOX_RESTRICTIONS),
    )
    failures = {}
    for path in files:
        history = WorkflowHistory.from_json(path.stem, path.read_text())
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        if result.replay_failure is not None:
            failures[path.name] = str(result.replay_failure)
    assert failures == {}
