"""Batch verification writes its approvals' records itself, in one transaction.

The workflows take the approvals without a local activity and hand the records back; these
tests hold the call to what a local activity gave: the answer is readable at once and
attributable, a lost answer loses no record (sending the approval again hands it over again,
and the workflow's next write carries it anyway), and rejections stay the workflow's to write.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from models.tables import Decision, Enrollment
from tests.api.conftest import Api
from tests.api.test_auth_and_roles import worker
from tests.api.test_steps_api import approve, detail, nominate, step, wait_for
from tests.harness import VILLAGE
from workflows.enrollment import EnrollmentWorkflow
from workflows.messages import Actor, Verification

VERIFIER = Actor(name="test-dpmd_verifier", role="dpmd_verifier")


async def audit_trail(api: Api, enrollment_id: str) -> list[dict[str, Any]]:
    answer = await api.http.get(
        "/v1/audit/events",
        params={"enrollment_id": enrollment_id},
        headers=api.auth("auditor"),
    )
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return sorted(items, key=lambda e: e["id"])


def decisions(api: Api, enrollment_id: str) -> list[tuple[str, str, str]]:
    with Session(api.engine) as session:
        rows = session.exec(
            select(Decision)
            .where(Decision.enrollment_id == enrollment_id)
            .order_by(col(Decision.decided_at))
        ).all()
        return [(d.action, d.actor, d.reason) for d in rows]


def projected_seq(api: Api, enrollment_id: str) -> int:
    with Session(api.engine) as session:
        row = session.get(Enrollment, enrollment_id)
        assert row is not None
        return row.seq


async def batch_verify(api: Api, body: dict[str, Any]) -> list[dict[str, Any]]:
    answer = await api.http.post(
        f"/v1/programs/{api.program.code}/verifications",
        json=body,
        headers=api.auth("dpmd_verifier"),
    )
    assert answer.status_code == 200, answer.text
    results: list[dict[str, Any]] = answer.json()["results"]
    return results


async def approve_without_writing(api: Api, enrollment_id: str) -> None:
    """What a batch call does up to its write: the workflow takes the approval, nobody writes
    the record (the API died before its transaction)."""
    handle = api.env.client.get_workflow_handle(enrollment_id)
    result = await handle.execute_update(
        EnrollmentWorkflow.verify,
        Verification(actor=VERIFIER, approve=True, reason="roster", recorded_by_caller=True),
    )
    assert result.state == "verified"
    assert [t.action for t in result.to_record] == ["verified"]


async def test_a_batch_writes_each_approval_before_it_answers(api: Api) -> None:
    ids = await nominate(api, worker(80), worker(81))
    results = await batch_verify(
        api, {"enrollment_ids": ids, "approve": True, "reason": "DPMD roster 2026"}
    )
    assert [(r["ok"], r["state"]) for r in results] == [(True, "verified")] * 2
    for enrollment_id in ids:
        # Read at once after the answer: the row, the decision and the audit entry are there.
        assert (await detail(api, enrollment_id))["state"] == "verified"
        assert projected_seq(api, enrollment_id) == 2
        assert decisions(api, enrollment_id) == [
            ("verified", "test-dpmd_verifier", "DPMD roster 2026")
        ]
        trail = await audit_trail(api, enrollment_id)
        assert [(e["action"], e["actor"], e["role"]) for e in trail] == [
            ("nominated", "test-village_operator", "village_operator"),
            ("verified", "test-dpmd_verifier", "dpmd_verifier"),
        ]
    # The budget and the registration follow as before; the trail holds each step once. (The
    # registration leaving the verification out is not visible here: a second write of it
    # would change nothing, by its event key.)
    await approve(api, *ids)
    for enrollment_id in ids:
        await wait_for(api, enrollment_id, "active")
        actions = [e["action"] for e in await audit_trail(api, enrollment_id)]
        assert actions == [
            "nominated",
            "verified",
            "budget_approved",
            "registration_started",
            "activated",
        ]
    # Once the budget is approved the approval is no longer handed over: sent again, refused.
    again = await batch_verify(api, {"enrollment_ids": ids[:1], "approve": True})
    assert again[0]["ok"] is False and "active" in again[0]["error"], again
    chain = await api.http.get("/v1/audit/verify", headers=api.auth("auditor"))
    assert chain.status_code == 200 and chain.json()["ok"] is True, chain.text


async def test_an_approval_sent_again_hands_its_lost_record_over(api: Api) -> None:
    (enrollment_id,) = await nominate(api, worker(82))
    await approve_without_writing(api, enrollment_id)
    assert (await detail(api, enrollment_id))["state"] == "nominated"  # the record never came
    # The verifier sees it still nominated and sends the village again: the step is not taken
    # twice, its record is written now.
    results = await batch_verify(api, {"village_code": VILLAGE, "approve": True})
    assert [(r["enrollment_id"], r["ok"], r["state"]) for r in results] == [
        (enrollment_id, True, "verified")
    ]
    assert (await detail(api, enrollment_id))["state"] == "verified"
    assert decisions(api, enrollment_id) == [("verified", "test-dpmd_verifier", "roster")]
    # Once written, the row shows it verified: sent again, it is refused as already verified
    # (the step is not taken twice), and the refused attempt is in the audit log.
    again = await batch_verify(api, {"enrollment_ids": [enrollment_id], "approve": True})
    assert [r["ok"] for r in again] == [False] and "verified" in again[0]["error"]
    actions = [e["action"] for e in await audit_trail(api, enrollment_id)]
    assert actions == ["nominated", "verified", "refused_verification"]


async def test_a_record_nobody_wrote_goes_with_the_workflows_next_write(api: Api) -> None:
    (enrollment_id,) = await nominate(api, worker(83))
    await approve_without_writing(api, enrollment_id)
    status, body = await step(
        api, enrollment_id, "withdrawal", {"reason": "moved away"}, "village_operator"
    )
    assert (status, body["state"]) == (200, "withdrawn")
    trail = await audit_trail(api, enrollment_id)
    assert [(e["action"], e["actor"], e["reason"]) for e in trail] == [
        ("nominated", "test-village_operator", ""),
        ("verified", "test-dpmd_verifier", "roster"),
        ("withdrawn", "test-village_operator", "moved away"),
    ]
    assert projected_seq(api, enrollment_id) == 3


async def test_a_single_verification_after_a_batch_one_is_still_refused(api: Api) -> None:
    (enrollment_id,) = await nominate(api, worker(84))
    await batch_verify(api, {"enrollment_ids": [enrollment_id], "approve": True})
    status, problem = await step(
        api, enrollment_id, "verification", {"approve": True}, "dpmd_verifier"
    )
    assert status == 409 and "verified" in problem["detail"]


async def test_batch_rejections_are_written_by_their_workflows(api: Api) -> None:
    ids = await nominate(api, worker(85), worker(86))
    results = await batch_verify(
        api, {"enrollment_ids": ids, "approve": False, "reason": "not a village officer"}
    )
    assert [(r["ok"], r["state"]) for r in results] == [(True, "rejected")] * 2
    for enrollment_id in ids:
        assert (await detail(api, enrollment_id))["state"] == "rejected"
        assert decisions(api, enrollment_id) == [
            ("rejected", "test-dpmd_verifier", "not a village officer")
        ]
    # Sending the rejection again is refused: the enrollment's workflow has ended.
    again = await batch_verify(
        api, {"enrollment_ids": ids[:1], "approve": False, "reason": "again"}
    )
    assert again[0]["ok"] is False
