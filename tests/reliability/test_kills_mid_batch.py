"""Scenario 6: a process SIGKILLed between a batch's Updates being taken and their records being
written, for each kind of batch.

A village's list, a batch verification and a budget approval each run as a batch workflow whose
activity sends the Updates and then writes their records in one transaction. Here the API
process that took the call is SIGKILLed while the batch is in flight (its caller never gets an
answer), and then both workers are, mid-batch. Within the lag bound the projection shows every
step the workflows took, the ledger equals the premiums of the funded enrollments, and
``rentan reconcile --check`` finds no difference; sending the same list again accepts every row
under the same enrollment id and doubles nothing (invariants 1, 2 and 4).
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.reliability.conftest import Record
from tests.reliability.stack import LAG_BOUND_S, Keys, Stack, village_lists, worker_json

pytestmark = [pytest.mark.reliability, pytest.mark.stack]

VILLAGES = 3
PER_VILLAGE = 30


def post_quietly(stack: Stack, path: str, key: str, body: dict[str, Any]) -> int | str:
    """A call whose answer may never come (its process killed): the status, or why not."""
    try:
        return stack.http.post(
            stack.api_url + path, headers=stack.auth(key), json=body, timeout=60
        ).status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


def batches(stack: Stack, workflow_type: str, *, running: bool = False) -> int:
    query = f"WorkflowType = '{workflow_type}'"
    if running:
        query += " AND ExecutionStatus = 'Running'"
    return stack.count_workflows(query)


def taken_and_running(stack: Stack, workflow_type: str, before: int, calls: int) -> bool:
    """Temporal took every call's batch, and one of them still runs (its records unwritten)."""
    return (
        batches(stack, workflow_type) >= before + calls
        and batches(stack, workflow_type, running=True) > 0
    )


def states(stack: Stack, program: str) -> Counter[str]:
    rows = stack.sql(
        "SELECT state, count(*) FROM enrollment WHERE program_code = :p GROUP BY state", p=program
    )
    return Counter(dict(rows))


def in_flight(
    stack: Stack, pool: ThreadPoolExecutor, calls: list[tuple[str, str, dict[str, Any]]]
) -> list[Future[int | str]]:
    return [pool.submit(post_quietly, stack, path, key, body) for path, key, body in calls]


def kill_api_mid(stack: Stack, workflow_type: str, before: int, calls: int) -> dict[str, Any]:
    """SIGKILL the API process the calls went to once Temporal took their batches, while one
    runs; start it again."""
    stack.wait_for(
        lambda: taken_and_running(stack, workflow_type, before, calls),
        what=f"the {workflow_type}s taken and running",
    )
    killed_at = time.monotonic()
    api = stack.apis[0]
    api.kill()
    code = api.returncode()
    api.start()
    stack.wait_http(f"{stack.api_url}/readyz", what="the API again")
    return {"killed_at": killed_at, "exit": code}


def kill_workers_mid(stack: Stack, workflow_type: str, before: int) -> dict[str, Any]:
    stack.wait_for(
        lambda: taken_and_running(stack, workflow_type, before, 1),
        what=f"the {workflow_type} taken and running",
    )
    killed_at = time.monotonic()
    codes = []
    for worker in stack.workers:
        worker.kill()
        codes.append(worker.returncode())
    for worker in stack.workers:
        worker.start()
    return {"killed_at": killed_at, "exit": codes}


def test_a_process_killed_mid_batch_leaves_no_step_unrecorded(stack: Stack, record: Record) -> None:
    program = "REL-MIDBATCH"
    lists = village_lists(VILLAGES * PER_VILLAGE, villages=VILLAGES, seed=66)
    keys: Keys = stack.make_keys(lists)
    stack.create_program(keys, program, ceiling_idr=10**12)
    total = VILLAGES * PER_VILLAGE
    figures: dict[str, Any] = {"enrollments": total}

    def lists_call(village: str) -> tuple[str, str, dict[str, Any]]:
        body = {"village_code": village, "workers": [worker_json(r) for r in lists[village]]}
        return f"/v1/programs/{program}/nominations", keys.operators[village], body

    with ThreadPoolExecutor(max_workers=VILLAGES) as pool:
        # 1. The API killed while the village lists' batches run.
        before = batches(stack, "NominationListWorkflow")
        calls = in_flight(stack, pool, [lists_call(v) for v in lists])
        kill = kill_api_mid(stack, "NominationListWorkflow", before, len(calls))
        answers = [f.result(timeout=90) for f in calls]
        waited = stack.wait_for(
            lambda: states(stack, program)["nominated"] == total,
            what="every nomination recorded",
            timeout_s=LAG_BOUND_S,
        )
        figures["lists"] = {
            "answers": answers,
            "api_exit": kill["exit"],
            "projection_complete_after_kill_s": round(time.monotonic() - kill["killed_at"], 1),
            "waited_s": round(waited, 1),
        }

        # The same lists sent again: every row accepted, under the same id, nothing doubled.
        again = stack.nominate_all(keys, program, lists)
        assert len(set(again.values())) == total

        # 2. Both workers killed while a batch verification of everyone runs.
        ids = sorted(again.values())
        verify = (
            f"/v1/programs/{program}/verifications",
            keys.verifier,
            {"enrollment_ids": ids, "approve": True, "reason": "matches the DPMD roster"},
        )
        before = batches(stack, "VerificationBatchWorkflow")
        calls = in_flight(stack, pool, [verify])
        kill = kill_workers_mid(stack, "VerificationBatchWorkflow", before)
        answer = calls[0].result(timeout=90)
        stack.wait_for(
            lambda: states(stack, program)["verified"] == total,
            what="every verification recorded",
            timeout_s=LAG_BOUND_S,
        )
        figures["verification"] = {
            "answer": answer,
            "worker_exits": kill["exit"],
            "projection_complete_after_kill_s": round(time.monotonic() - kill["killed_at"], 1),
        }

        # 3. The API killed while the villages' budget approvals run.
        approvals = [
            (
                f"/v1/programs/{program}/budget-approvals",
                keys.budget,
                {"funding_source": "APBD", "village_code": village},
            )
            for village in lists
        ]
        before = batches(stack, "BudgetApprovalWorkflow")
        calls = in_flight(stack, pool, approvals)
        kill = kill_api_mid(stack, "BudgetApprovalWorkflow", before, len(calls))
        answers = [f.result(timeout=90) for f in calls]
        stack.wait_for(
            lambda: states(stack, program)["active"] == total,
            what="every funded enrollment active",
            timeout_s=LAG_BOUND_S + 30,
        )
        commitments = stack.open_commitments(program)
        premiums = stack.sql(
            "SELECT sum(premium_idr) FROM enrollment WHERE program_code = :p", p=program
        )[0][0]
        figures["budget"] = {
            "answers": answers,
            "api_exit": kill["exit"],
            "open_commitments": len(commitments),
            "ledger_sum_idr": sum(row[2] for row in commitments),
            "premiums_of_funded_idr": premiums,
        }
    # Once, for all three: the whole program against its workflows.
    figures.update(stack.reconcile_until_clean(program, since=kill["killed_at"]))
    audit_twice = stack.sql(
        "SELECT count(*) FROM (SELECT a.enrollment_id FROM audit_event a "
        "JOIN enrollment e ON e.id = a.enrollment_id WHERE e.program_code = :p "
        "GROUP BY a.enrollment_id, a.action, a.run_id HAVING count(*) > 1) twice",
        p=program,
    )[0][0]
    figures["audit_events_written_twice"] = audit_twice
    figures["bpjs_registrations"] = stack.sim_counts()["total"]
    record("kills_mid_batch", figures)

    assert figures["lists"]["api_exit"] == -9 and figures["budget"]["api_exit"] == -9
    # The kills landed mid-batch: some callers never got their answer...
    assert any(a != 200 for a in figures["lists"]["answers"]), figures["lists"]
    assert any(a != 200 for a in figures["budget"]["answers"]), figures["budget"]
    # ... and one that waited through the workers' deaths got it, once the batch ran again.
    assert figures["verification"]["answer"] == 200, figures["verification"]
    assert figures["verification"]["worker_exits"] == [-9, -9]
    assert len({row[1] for row in commitments}) == len(commitments) == total
    assert figures["budget"]["ledger_sum_idr"] == premiums
    assert audit_twice == 0
    assert figures["bpjs_registrations"] == total
