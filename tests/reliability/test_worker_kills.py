"""Scenario 2: workers killed with SIGKILL mid-cohort lose nothing and duplicate nothing.

Two worker processes share the task queue. One is SIGKILLed while the village lists are being
nominated, then once after each village's budget approval while that village's registrations
are in flight at BPJS (the simulator holds each call for a second, so the kill lands between
BPJS registering a person and the worker hearing the answer). Each killed worker is started
again. Every accepted nomination must end active, with one enrollment row, one BPJS
registration and one audit entry per step per person, the audit chain intact (invariants 1, 2,
3 and 5), and ``rentan reconcile --check`` finding no difference within the lag bound.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.reliability.conftest import Record
from tests.reliability.stack import (
    Proc,
    Stack,
    assert_exactly_once,
    exactly_once_figures,
    registration_attempts,
    village_lists,
)

pytestmark = [pytest.mark.reliability, pytest.mark.stack]

COHORT = 40
PROGRAM = "REL-KILL"
LATENCY_MS = 1000


def kill_and_restart(stack: Stack, worker: Proc, phase: str, program: str) -> dict[str, Any]:
    """SIGKILL a worker by its pid and start it again; what was in flight when it died."""
    in_flight = stack.sql(
        "SELECT state, count(*) FROM enrollment WHERE program_code = :p GROUP BY state",
        p=program,
    )
    pid = worker.pid
    worker.kill()
    code = worker.returncode()
    worker.start()
    return {
        "phase": phase,
        "worker": worker.name,
        "pid": pid,
        "exit": code,
        "states_at_kill": dict(in_flight),
    }


def test_sigkilled_workers_lose_and_duplicate_nothing(stack: Stack, record: Record) -> None:
    began = time.monotonic()
    lists = village_lists(COHORT, villages=3, seed=22)
    stack.set_faults(latency_ms=LATENCY_MS, seed=7)
    keys = stack.make_keys(lists)
    stack.create_program(keys, PROGRAM, ceiling_idr=10**12)
    kills: list[dict[str, Any]] = []

    # Nomination: the lists go in together; a worker dies while they are being recorded.
    nominating = time.monotonic()
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(stack.nominate_all, keys, PROGRAM, lists)
        # Some enrollments started, the lists' batches not yet done: their records unwritten.
        stack.wait_for(
            lambda: stack.count_workflows(f"RentanProgram = '{PROGRAM}'") > 0,
            what="the lists' first enrollments started",
        )
        during = not future.done()
        kills.append(kill_and_restart(stack, stack.workers[0], "nomination", PROGRAM))
        kills[-1]["lists_still_in_flight"] = during
        accepted = future.result(timeout=180)
    nomination_s = time.monotonic() - nominating
    assert len(accepted) == COHORT

    for village in lists:
        results = stack.verify_village(keys, PROGRAM, village)
        assert all(r["ok"] for r in results), results

    # Registration: after each village's approval, kill a worker while BPJS calls are in flight.
    funded_at = time.monotonic()
    for number, village in enumerate(lists):
        approval = stack.approve_village(keys, PROGRAM, village)
        assert all(r["ok"] for r in approval["results"]), approval
        # The approval answered; its registrations are at BPJS (LATENCY_MS each) meanwhile.
        worker = stack.workers[number % 2]
        kills.append(kill_and_restart(stack, worker, "registration", PROGRAM))

    stack.wait_settled(keys.auditor, PROGRAM, expected=COHORT, timeout_s=150)
    settled_at = time.monotonic()
    registration_s = settled_at - funded_at
    figures = exactly_once_figures(stack, keys, PROGRAM, accepted)
    chain = stack.audit_verify(keys)
    attempts = registration_attempts(stack, PROGRAM)
    reconciled = stack.reconcile_until_clean(PROGRAM, since=settled_at)
    stack.check_alive()
    registration_kills = [k for k in kills if k["phase"] == "registration"]
    record(
        "worker_sigkill",
        {
            **figures,
            **attempts,
            **reconciled,
            "workers": len(stack.workers),
            "kills": len(kills),
            "kills_during_nomination": sum(
                1 for k in kills if k["phase"] == "nomination" and k["lists_still_in_flight"]
            ),
            "kills_during_registration": len(registration_kills),
            "registering_at_kills": [
                k["states_at_kill"].get("registering", 0) for k in registration_kills
            ],
            "restarts": len(kills),
            "sim_latency_ms": LATENCY_MS,
            "audit_chain": chain,
            "nomination_s": round(nomination_s, 1),
            "registration_s": round(registration_s, 1),
            "total_s": round(time.monotonic() - began, 1),
        },
    )
    assert all(k["exit"] == -9 for k in kills), kills
    assert len(registration_kills) == 3
    assert_exactly_once(figures)
    assert chain["ok"], chain
    # The kills landed on registrations in flight: their next attempt came after a timeout.
    assert attempts["registrations_retried_after_timeout"] > 0, attempts
