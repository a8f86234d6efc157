"""A step Temporal does not take in time: the API answers "send it again" (503 for a single step,
per id in a batch), never a 500, and the step sent again is taken once. The deadline is real: the
SDK's own timeout of the Update's call, made too short for any server to meet (a loaded dev
server missed its deadline this way in the seed cohort: BENCHMARKS.md, 2026-11-28)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

import rentan.steps
from rentan.steps import NOT_RECORDED, NOT_SENT, NOT_SENT_BUDGET
from tests.api.conftest import Api
from tests.api.test_auth_and_roles import assert_problem, worker
from tests.api.test_steps_api import (
    PREMIUM,
    approve,
    nominate,
    refusals,
    source,
    step,
    verify,
    wait_for,
)
from tests.harness import audit_of

NO_TIME = dt.timedelta(microseconds=1)


def transitions(api: Api, enrollment_id: str, action: str) -> int:
    return sum(1 for e in audit_of(api.engine, enrollment_id) if e.action == action)


async def test_a_single_step_temporal_does_not_take_in_time_is_503_and_taken_when_sent_again(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    [enrollment_id] = await nominate(api, worker(61))
    with monkeypatch.context() as patched:
        patched.setattr(rentan.steps, "STEP_RPC_TIMEOUT", NO_TIME)
        answer = await api.http.post(
            f"/v1/enrollments/{enrollment_id}/verification",
            json={"approve": True, "reason": "matches DPMD roster"},
            headers=api.auth("dpmd_verifier"),
        )
    problem = assert_problem(answer, 503, "verification not sent")
    assert problem["detail"] == f"the verification {NOT_SENT}"
    assert problem["enrollment_id"] == enrollment_id
    assert answer.headers["Retry-After"] == "1"

    # Sent again: taken (or, had the first call reached the workflow after all, refused as
    # already verified); either way the enrollment is verified once.
    status, _ = await step(
        api,
        enrollment_id,
        "verification",
        {"approve": True, "reason": "matches DPMD roster"},
        "dpmd_verifier",
    )
    assert status in (200, 409)
    await wait_for(api, enrollment_id, "verified")
    assert transitions(api, enrollment_id, "verified") == 1


async def test_a_batch_verification_not_taken_answers_send_again_per_id(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await nominate(api, worker(62), worker(63))
    with monkeypatch.context() as patched:
        patched.setattr(rentan.steps, "STEP_RPC_TIMEOUT", NO_TIME)
        answer = await api.http.post(
            f"/v1/programs/{api.program.code}/verifications",
            json={"enrollment_ids": ids, "approve": True, "reason": "matches DPMD roster"},
            headers=api.auth("dpmd_verifier"),
        )
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [(r["enrollment_id"], r["ok"], r["error"]) for r in results] == [
        (i, False, NOT_SENT) for i in ids
    ]
    # Not sent is no refusal: nothing is written as refused for a step that may be taken.
    assert await refusals(api, "verification") == []
    await verify(api, *ids)  # the same batch sent again
    for enrollment_id in ids:
        await wait_for(api, enrollment_id, "verified")
        assert transitions(api, enrollment_id, "verified") == 1


async def test_a_batch_whose_records_cannot_be_written_answers_send_again_per_id(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await nominate(api, worker(66), worker(67))

    def failing(*_: Any, **__: Any) -> None:
        raise OperationalError("INSERT INTO decision ...", {}, Exception("database is locked"))

    with monkeypatch.context() as patched:
        patched.setattr(rentan.steps, "record_steps", failing)
        answer = await api.http.post(
            f"/v1/programs/{api.program.code}/verifications",
            json={"enrollment_ids": ids, "approve": True, "reason": "matches DPMD roster"},
            headers=api.auth("dpmd_verifier"),
        )
    assert answer.status_code == 200, answer.text
    assert [(r["ok"], r["error"]) for r in answer.json()["results"]] == [(False, NOT_RECORDED)] * 2
    assert await refusals(api, "verification") == []
    await verify(api, *ids)  # sent again: the records handed over again, and written
    for enrollment_id in ids:
        assert (await wait_for(api, enrollment_id, "verified"))["state"] == "verified"
        assert transitions(api, enrollment_id, "verified") == 1


async def test_a_budget_approval_not_taken_keeps_its_commitment_and_commits_once_when_resent(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await nominate(api, worker(64), worker(65))
    await verify(api, *ids)
    before = (await source(api))["committed_idr"]
    with monkeypatch.context() as patched:
        patched.setattr(rentan.steps, "STEP_RPC_TIMEOUT", NO_TIME)
        answer = await api.http.post(
            f"/v1/programs/{api.program.code}/budget-approvals",
            json={"funding_source": "APBD", "enrollment_ids": ids},
            headers=api.auth("budget_officer"),
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [(r["ok"], r["error"]) for r in body["results"]] == [(False, NOT_SENT_BUDGET)] * 2
    # The premiums stay committed while nobody knows whether the workflows took the approval:
    # the ceiling can never be spent twice over.
    assert body["committed_idr"] == before + 2 * PREMIUM

    await approve(api, *ids)  # sent again: taken, and nothing committed a second time
    assert (await source(api))["committed_idr"] == before + 2 * PREMIUM
    for enrollment_id in ids:
        await wait_for(api, enrollment_id, "active")
        assert transitions(api, enrollment_id, "budget_approved") == 1
