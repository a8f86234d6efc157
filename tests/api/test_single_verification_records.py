"""A single approval writes its record itself, as a batch does (``api.steps.run_verification``):
the workflow takes it without a local activity, and the call writes the record before it
answers. Held to what the local activity gave: readable at once and attributable, a second
approval still refused, a lost answer or a failed write healed by sending it again."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

import api.steps as api_steps
from tests.api.conftest import Api
from tests.api.test_auth_and_roles import assert_problem, worker
from tests.api.test_batch_verification_records import (
    approve_without_writing,
    audit_trail,
    decisions,
)
from tests.api.test_steps_api import approve, detail, nominate, step, wait_for
from tests.workflows.test_nomination_records import markers

APPROVAL = {"approve": True, "reason": "matches the DPMD roster"}


async def verify_one(api: Api, enrollment_id: str) -> tuple[int, dict[str, Any]]:
    return await step(api, enrollment_id, "verification", APPROVAL, "dpmd_verifier")


async def test_a_single_approval_is_written_before_it_answers_without_a_local_activity(
    api: Api,
) -> None:
    (enrollment_id,) = await nominate(api, worker(70))
    status, body = await verify_one(api, enrollment_id)
    assert (status, body["state"]) == (200, "verified")
    # Read your writes: the row, the decision and the audit entry are there at the answer.
    assert (await detail(api, enrollment_id))["state"] == "verified"
    assert decisions(api, enrollment_id) == [
        ("verified", "test-dpmd_verifier", "matches the DPMD roster")
    ]
    trail = await audit_trail(api, enrollment_id)
    assert [(e["action"], e["actor"]) for e in trail] == [
        ("nominated", "test-village_operator"),
        ("verified", "test-dpmd_verifier"),
    ]
    # Neither the nomination nor the verification ran a local activity in the workflow.
    assert await markers(api.env, enrollment_id) == []

    # A second approval is refused, as before.
    status, problem = await verify_one(api, enrollment_id)
    assert status == 409 and "verified" in problem["detail"]

    # The budget approval goes on from the caller's record: one "verified" in the trail.
    await approve(api, enrollment_id)
    await wait_for(api, enrollment_id, "active")
    actions = [e["action"] for e in await audit_trail(api, enrollment_id)]
    assert actions.count("verified") == 1, actions


async def test_a_single_approval_whose_answer_was_lost_is_written_when_sent_again(
    api: Api,
) -> None:
    (enrollment_id,) = await nominate(api, worker(71))
    await approve_without_writing(api, enrollment_id)  # taken, never written
    assert (await detail(api, enrollment_id))["state"] == "nominated"

    status, body = await verify_one(api, enrollment_id)
    assert (status, body["state"]) == (200, "verified")
    assert (await detail(api, enrollment_id))["state"] == "verified"
    assert [a for a, _, _ in decisions(api, enrollment_id)] == ["verified"]


async def test_a_single_approval_whose_write_fails_is_503_and_written_when_sent_again(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    (enrollment_id,) = await nominate(api, worker(72))

    def failing(*_: Any, **__: Any) -> None:
        raise OperationalError("INSERT INTO decision ...", {}, Exception("database is locked"))

    with monkeypatch.context() as patched:
        patched.setattr(api_steps, "record_steps", failing)
        answer = await api.http.post(
            f"/v1/enrollments/{enrollment_id}/verification",
            json=APPROVAL,
            headers=api.auth("dpmd_verifier"),
        )
    problem = assert_problem(answer, 503, "record not written")
    assert "send it again" in problem["detail"]
    assert "INSERT" not in answer.text  # the database's text (row values) stays out
    assert (await detail(api, enrollment_id))["state"] == "nominated"

    status, body = await verify_one(api, enrollment_id)
    assert (status, body["state"]) == (200, "verified")
    assert [a for a, _, _ in decisions(api, enrollment_id)] == ["verified"]


async def test_a_single_rejection_is_still_written_by_its_workflow(api: Api) -> None:
    (enrollment_id,) = await nominate(api, worker(73))
    status, body = await step(
        api,
        enrollment_id,
        "verification",
        {"approve": False, "reason": "not a village officer"},
        "dpmd_verifier",
    )
    assert (status, body["state"]) == (200, "rejected")
    assert (await detail(api, enrollment_id))["state"] == "rejected"
    assert decisions(api, enrollment_id) == [
        ("rejected", "test-dpmd_verifier", "not a village officer")
    ]
