"""A list whose rows Temporal does not take in time: each such row is answered "send the list
again" (the call answers; it does not hang), and the same list sent again is accepted, one
workflow and one row per person (invariants 1 and 2). The deadline is real: the dev server, with
no worker polling the task queue, cannot have the nomination taken before the row's own
``NOMINATION_RPC_TIMEOUT`` passes, as a loaded server did not in the seed cohort."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy.engine import Engine
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

import rentan.nominations as nominations
from rentan.settings import Settings
from tests.harness import (
    audit_of,
    make_program,
    make_sim,
    nominate_rows,
    row_of,
    running_worker,
    server_today,
    worker_row,
)
from tests.workflows.test_nomination_records import rows_in

SHORT = dt.timedelta(seconds=1)


async def test_rows_not_taken_in_time_are_sent_again_and_accepted_once(
    dev_server_env: WorkflowEnvironment,
    settings: Settings,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = dev_server_env
    today = await server_today(env)
    program = make_program(engine, start=today.replace(day=1))
    rows = [worker_row(91), worker_row(92)]

    # No worker polls the test's task queue: nothing can take the nomination.
    with monkeypatch.context() as patched:
        patched.setattr(nominations, "NOMINATION_RPC_TIMEOUT", SHORT)
        began = time.monotonic()
        first = await nominate_rows(env.client, engine, settings, program, rows, today=today)
        waited = time.monotonic() - began
    assert first.accepted == []
    assert [(r.row, [(e.field, e.message) for e in r.errors]) for r in first.rejected] == [
        (1, [("row", nominations.SEND_LIST_AGAIN)]),
        (2, [("row", nominations.SEND_LIST_AGAIN)]),
    ]
    assert waited < 30, waited  # the rows' deadline, not the SDK's endless retry
    assert rows_in(engine) == []  # nothing half-written

    async with running_worker(env.client, settings, engine, make_sim()):
        again = await nominate_rows(env.client, engine, settings, program, rows, today=today)
        assert again.rejected == []
        ids = [a.enrollment_id for a in again.accepted]
        assert len(set(ids)) == 2
        assert sorted(rows_in(engine)) == sorted(ids)
        for enrollment_id in ids:
            assert row_of(engine, enrollment_id).state == "nominated"
            assert [e.action for e in audit_of(engine, enrollment_id)] == ["nominated"]
            # One run per person: the list sent again reached the workflow the first call
            # started, it did not start another.
            runs = [w async for w in env.client.list_workflows(f"WorkflowId = '{enrollment_id}'")]
            assert len(runs) == 1, runs
            assert runs[0].status == WorkflowExecutionStatus.RUNNING
