"""Determinism guard: histories recorded from real runs must replay on today's workflow code.

A change to ``EnrollmentWorkflow`` that would break running enrollments (a new activity, timer or
command order on an existing path) fails here. Histories live in ``histories/``; they were
encrypted with the test payload key (``tests.conftest.TEST_PAYLOAD_KEY``). ``v1-*`` were recorded
before the ``lean-steps`` patch (a search-attribute upsert at every step, budget and registration
recorded apart), ``v2-*`` under that patch (its marker and a TemporalChangeVersion upsert), the
``v3-*`` with ``EnrollmentInput.lean_steps`` (no patch marker; the registration activity records
the activation), ``v4-*`` also with ``budget_recorded_by_registration`` (budget approval
answers without a local activity; the registration activity writes it), ``v5-*`` also with
the approvals of a batch verification (``Verification.recorded_by_caller``: no local activity,
the caller writes the record), the others also with the nominations of a list
(``NominationRequest.recorded_by_caller``: the list's call writes the rows; the ``expired``
one, never verified, writes its row again at the reminder: no step told it the row exists).
All must keep replaying.

To record them again (only when a change is meant to be incompatible and is versioned with
``workflow.patched``), run ``.venv/bin/python -m pytest tests/replay/record_histories.py -k sqlite``
(that file is not collected by a plain ``pytest``).
"""

from __future__ import annotations

from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from core.temporal import data_converter
from tests.conftest import test_settings
from workflows.enrollment import EnrollmentWorkflow

HISTORIES = Path(__file__).parent / "histories"


def recorded() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


async def test_recorded_histories_replay_on_current_code(tmp_path: Path) -> None:
    files = recorded()
    assert len(files) >= 42, "the recorded histories are missing"
    for version in ("v1-", "v2-", "v3-", "v4-", "v5-"):
        assert sum(p.name.startswith(version) for p in files) == 7, version
    replayer = Replayer(
        workflows=[EnrollmentWorkflow], data_converter=data_converter(test_settings(tmp_path))
    )
    failures = {}
    for path in files:
        history = WorkflowHistory.from_json(path.stem, path.read_text())
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        if result.replay_failure is not None:
            failures[path.name] = str(result.replay_failure)
    assert failures == {}
