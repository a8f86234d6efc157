"""Scenario 3: the Temporal dev server is killed (SIGKILL) mid-cohort and started again.

While registrations are in flight at BPJS, ``rentan temporal`` is killed with SIGKILL and
started again on the same SQLite file and port. During the outage a village operator sends a
list: it is answered 503 "send it again" (sent again, as an operator would, until taken) or
accepted, never a 500. The workers and the API are not restarted: they must reconnect on their
own. Every accepted nomination must end active, registered at BPJS exactly once (invariants 1
and 3; DESIGN.md: WAL survives kill -9), and ``rentan reconcile --check`` finds no difference.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.reliability.conftest import Record
from tests.reliability.stack import (
    Stack,
    assert_exactly_once,
    exactly_once_figures,
    registration_attempts,
    village_lists,
)

pytestmark = [pytest.mark.reliability, pytest.mark.stack]

COHORT = 40
PROGRAM = "REL-TEMPORAL"
LATENCY_MS = 1000
DOWN_S = 3.0


def test_temporal_killed_mid_cohort_restarts_on_the_same_file_and_loses_nothing(
    stack: Stack, record: Record
) -> None:
    began = time.monotonic()
    lists = village_lists(COHORT, villages=4, seed=33)
    stack.set_faults(latency_ms=LATENCY_MS, seed=9)
    keys = stack.make_keys(lists)
    stack.create_program(keys, PROGRAM, ceiling_idr=10**12)
    late_village = list(lists)[-1]
    late_rows = lists[late_village]
    early = {v: rows for v, rows in lists.items() if v != late_village}

    accepted = stack.nominate_all(keys, PROGRAM, early)
    for village in early:
        assert all(r["ok"] for r in stack.verify_village(keys, PROGRAM, village))
    with ThreadPoolExecutor(max_workers=len(early)) as pool:  # the villages funded at once
        for approval in pool.map(lambda v: stack.approve_village(keys, PROGRAM, v), early):
            assert all(r["ok"] for r in approval["results"]), approval
    # The approvals answered: their registrations are at BPJS now (LATENCY_MS each).
    at_kill = dict(
        stack.sql(
            "SELECT state, count(*) FROM enrollment WHERE program_code = :p GROUP BY state",
            p=PROGRAM,
        )
    )

    old_pid = stack.temporal.pid
    killed_at = time.monotonic()
    stack.temporal.kill()
    killed_code = stack.temporal.returncode()
    with ThreadPoolExecutor(max_workers=1) as pool:
        outage = pool.submit(stack.nominate_all, keys, PROGRAM, {late_village: late_rows})
        readyz_down = stack.http.get(f"{stack.api_url}/readyz", timeout=15)
        # Down for a while, as a crashed server is: its restart is not instant either.
        stack.wait_for(
            lambda: time.monotonic() - killed_at >= DOWN_S, what="the outage", alive=False
        )
        stack.temporal.start()
        listening_s = stack.wait_temporal_listening()
        stack.wait_http(f"{stack.api_url}/readyz", what="API ready after the restart")
        ready_after_s = time.monotonic() - killed_at
        accepted.update(outage.result(timeout=240))
    assert len(accepted) == COHORT
    assert all(r["ok"] for r in stack.verify_village(keys, PROGRAM, late_village))
    approval = stack.approve_village(keys, PROGRAM, late_village)
    assert all(r["ok"] for r in approval["results"]), approval

    stack.wait_settled(keys.auditor, PROGRAM, expected=COHORT, timeout_s=150)
    settled_at = time.monotonic()
    figures = exactly_once_figures(stack, keys, PROGRAM, accepted)
    chain = stack.audit_verify(keys)
    attempts = registration_attempts(stack, PROGRAM)
    reconciled = stack.reconcile_until_clean(PROGRAM, since=settled_at)
    stack.check_alive()  # no worker and no API process died of the outage
    record(
        "temporal_sigkill_restart",
        {
            **figures,
            **attempts,
            **reconciled,
            "temporal_kills": 1,
            "temporal_exit": killed_code,
            "temporal_pids": [old_pid, stack.temporal.pid],
            "temporal_restarts": stack.temporal.starts - 1,
            "states_at_kill": at_kill,
            "readyz_while_down": readyz_down.status_code,
            "down_s": DOWN_S,
            "listening_again_after_start_s": round(listening_s, 2),
            "api_ready_after_kill_s": round(ready_after_s, 1),
            "outage_list_rows": len(late_rows),
            "audit_chain": chain,
            "total_s": round(time.monotonic() - began, 1),
        },
    )
    assert killed_code == -9
    assert at_kill.get("registering", 0) > 0, at_kill
    assert readyz_down.status_code == 503, readyz_down.text
    assert_exactly_once(figures)
    assert chain["ok"], chain
