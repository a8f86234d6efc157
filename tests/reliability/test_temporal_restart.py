"""Scenario 3: the Temporal dev server is killed (SIGKILL) mid-cohort and started again.

While registrations are in flight at BPJS, ``rentan temporal`` is killed with SIGKILL and
started again on the same SQLite file and port. During the outage a village operator sends a
list: each row is either accepted or rejected with "send the list again" (then sent again after
the restart), never answered with a 5xx. The workers and the API are not restarted: they must
reconnect on their own. Every accepted nomination must end active, registered at BPJS exactly
once (invariants 1 and 3; DESIGN.md: WAL survives kill -9).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from domain.worker_rows import WorkerRow
from tests.reliability.conftest import Record, StackFactory
from tests.reliability.stack import (
    Keys,
    Stack,
    assert_exactly_once,
    exactly_once_figures,
    registration_attempts,
    village_lists,
)

pytestmark = [pytest.mark.reliability, pytest.mark.stack]

COHORT = 80
PROGRAM = "REL-TEMPORAL"
LATENCY_MS = 2000
DOWN_S = 3.0


def nominate_during_outage(
    stack: Stack, keys: Keys, village: str, rows: list[WorkerRow]
) -> tuple[int, dict[str, Any]]:
    """The list sent while Temporal is down: the status and the answer (never a 5xx)."""
    body = {"village_code": village, "workers": [r.__dict__ for r in rows]}
    response = stack.http.post(
        f"{stack.api_url}/v1/programs/{PROGRAM}/nominations",
        headers=stack.auth(keys.operators[village]),
        json=body,
        timeout=httpx.Timeout(180.0, connect=5.0),
    )
    return response.status_code, response.json()


def test_temporal_killed_mid_cohort_restarts_on_the_same_file_and_loses_nothing(
    stack_factory: StackFactory, record: Record
) -> None:
    began = time.monotonic()
    lists = village_lists(COHORT, villages=4, seed=33)
    stack = stack_factory(workers=2, sim_args=["--latency-ms", str(LATENCY_MS), "--seed", "9"])
    keys = stack.make_keys(lists)
    stack.create_program(keys, PROGRAM, ceiling_idr=10**12)
    late_village = list(lists)[-1]
    late_rows = lists[late_village]
    early = {v: rows for v, rows in lists.items() if v != late_village}

    accepted, resent = stack.nominate_all(keys, PROGRAM, early)
    for village in early:
        assert all(r["ok"] for r in stack.verify_village(keys, PROGRAM, village))
    with ThreadPoolExecutor(max_workers=len(early)) as pool:  # the villages funded at once
        for approval in pool.map(lambda v: stack.approve_village(keys, PROGRAM, v), early):
            assert all(r["ok"] for r in approval["results"]), approval
    time.sleep(0.3)  # registrations are now in flight at BPJS (LATENCY_MS each)
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
        outage = pool.submit(nominate_during_outage, stack, keys, late_village, late_rows)
        time.sleep(DOWN_S)
        readyz_down = stack.http.get(f"{stack.api_url}/readyz", timeout=15)
        stack.temporal.start()
        listening_s = stack.wait_temporal_listening()
        stack.wait_http(f"{stack.api_url}/readyz", what="API ready after the restart")
        ready_after_s = time.monotonic() - killed_at
        outage_status, outage_answer = outage.result(timeout=240)

    # The list sent during the outage: accepted rows stand; the others are sent again.
    assert outage_status == 200, (outage_status, outage_answer)
    late_accepted = {a["row"]: a["enrollment_id"] for a in outage_answer["accepted"]}
    for rejected in outage_answer["rejected"]:
        assert [e["field"] for e in rejected["errors"]] == ["row"], rejected
    for number, row in enumerate(late_rows, start=1):
        if number in late_accepted:
            accepted[row.nik or ""] = late_accepted[number]
    again = [row for n, row in enumerate(late_rows, start=1) if n not in late_accepted]
    if again:
        got, more = stack.nominate_all(keys, PROGRAM, {late_village: again})
        accepted.update(got)
        resent += len(again) + more
    assert len(accepted) == COHORT
    assert all(r["ok"] for r in stack.verify_village(keys, PROGRAM, late_village))
    approval = stack.approve_village(keys, PROGRAM, late_village)
    assert all(r["ok"] for r in approval["results"]), approval

    stack.wait_settled(keys.auditor, PROGRAM, expected=COHORT, timeout_s=150)
    figures = exactly_once_figures(stack, keys, PROGRAM, accepted)
    chain = stack.audit_verify(keys)
    attempts = registration_attempts(stack, PROGRAM)
    stack.check_alive()  # no worker and no API process died of the outage
    record(
        "temporal_sigkill_restart",
        {
            **figures,
            **attempts,
            "temporal_kills": 1,
            "temporal_exit": killed_code,
            "temporal_pids": [old_pid, stack.temporal.pid],
            "temporal_restarts": stack.temporal.starts - 1,
            "worker_restarts": sum(w.starts - 1 for w in stack.workers),
            "states_at_kill": at_kill,
            "readyz_while_down": readyz_down.status_code,
            "down_s": DOWN_S,
            "listening_again_after_start_s": round(listening_s, 2),
            "api_ready_after_kill_s": round(ready_after_s, 1),
            "outage_list_rows": len(late_rows),
            "outage_list_accepted": len(late_accepted),
            "outage_list_rows_sent_again": len(again),
            "rows_sent_again": resent,
            "audit_chain": chain,
            "startup_s": stack.timings["startup_s"],
            "total_s": round(time.monotonic() - began, 1),
        },
    )
    assert killed_code == -9
    assert at_kill.get("registering", 0) > 0, at_kill
    assert readyz_down.status_code == 503, readyz_down.text
    assert all(w.starts == 1 for w in stack.workers)
    assert_exactly_once(figures)
    assert chain["ok"], chain
