"""Deadlines of the verification step as durable timers: a reminder after 7 days, escalation
after 14, and expiry where the program says so; time skipped on the test server."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.engine import Engine
from temporalio.testing import WorkflowEnvironment

from models.tables import Program
from core.settings import Settings
from services.steps import StepRefused, send_step
from tests.harness import (
    OPERATOR,
    VERIFIER,
    audit_of,
    make_program,
    make_sim,
    nominate_rows,
    row_of,
    running_worker,
    server_today,
    worker_row,
)
from workflows.enrollment import EnrollmentWorkflow
from workflows.messages import Verification, Withdrawal

DAY = dt.timedelta(days=1)


def actions(engine: Engine, enrollment_id: str) -> list[str]:
    return [e.action for e in audit_of(engine, enrollment_id)]


async def nominate_one(
    env: WorkflowEnvironment, engine: Engine, settings: Settings, program: Program, serial: int
) -> str:
    result = await nominate_rows(
        env.client, engine, settings, program, [worker_row(serial)], today=await server_today(env)
    )
    (accepted,) = result.accepted
    return accepted.enrollment_id


async def state_of(env: WorkflowEnvironment, enrollment_id: str) -> str:
    view = await env.client.get_workflow_handle(enrollment_id).query(EnrollmentWorkflow.view)
    return view.state


async def test_unverified_nomination_is_reminded_escalated_and_expires(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    env = time_skipping_env
    program = make_program(engine, start=(await server_today(env)).replace(day=1), expiry_days=21)
    async with running_worker(env.client, settings, engine, make_sim()):
        enrollment_id = await nominate_one(env, engine, settings, program, 61)

        await env.sleep(6 * DAY)
        assert actions(engine, enrollment_id) == ["nominated"]

        await env.sleep(2 * DAY)  # day 8
        assert actions(engine, enrollment_id) == ["nominated", "verification_reminder"]
        reminder = audit_of(engine, enrollment_id)[-1]
        assert (reminder.actor, reminder.role) == ("rentan", "system")
        assert (reminder.state_before, reminder.state_after) == ("nominated", "nominated")
        assert reminder.reason == "not verified after 7 days"
        assert row_of(engine, enrollment_id).state == "nominated"

        await env.sleep(7 * DAY)  # day 15
        assert actions(engine, enrollment_id)[-1] == "verification_escalated"
        assert audit_of(engine, enrollment_id)[-1].reason == "not verified after 14 days"
        assert row_of(engine, enrollment_id).state == "nominated"
        assert await state_of(env, enrollment_id) == "nominated"

        await env.sleep(7 * DAY)  # day 22
        handle = env.client.get_workflow_handle(enrollment_id)
        assert await handle.result() == "expired"
        assert await state_of(env, enrollment_id) == "expired"
        with pytest.raises(StepRefused):
            await send_step(
                env.client,
                enrollment_id,
                EnrollmentWorkflow.verify,
                Verification(VERIFIER, approve=True),
            )

    row = row_of(engine, enrollment_id)
    assert (row.state, row.seq) == ("expired", 4)
    events = audit_of(engine, enrollment_id)
    assert [(e.action, e.state_before, e.state_after) for e in events] == [
        ("nominated", None, "nominated"),
        ("verification_reminder", "nominated", "nominated"),
        ("verification_escalated", "nominated", "nominated"),
        ("verification_expired", "nominated", "expired"),
    ]
    assert events[-1].reason == "verification deadline passed"
    # Reminders and escalation happen about 7 and 14 days after the nomination.
    nominated_at = events[0].occurred_at
    assert [round((e.occurred_at - nominated_at) / DAY) for e in events] == [0, 7, 14, 21]


async def test_without_expiry_a_nomination_waits_and_can_still_be_verified(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    env = time_skipping_env
    program = make_program(engine, start=(await server_today(env)).replace(day=1))
    assert program.verification_expiry_days is None
    async with running_worker(env.client, settings, engine, make_sim()):
        enrollment_id = await nominate_one(env, engine, settings, program, 62)
        await env.sleep(60 * DAY)
        assert await state_of(env, enrollment_id) == "nominated"
        assert row_of(engine, enrollment_id).state == "nominated"
        assert actions(engine, enrollment_id) == [
            "nominated",
            "verification_reminder",
            "verification_escalated",
        ]
        step = await send_step(
            env.client,
            enrollment_id,
            EnrollmentWorkflow.verify,
            Verification(VERIFIER, approve=True, reason="late, but checked"),
        )
        assert step.state == "verified"
        await send_step(
            env.client, enrollment_id, EnrollmentWorkflow.withdraw, Withdrawal(OPERATOR, "done")
        )
    assert row_of(engine, enrollment_id).state == "withdrawn"


async def test_verified_in_time_no_reminder_and_no_expiry(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    env = time_skipping_env
    program = make_program(engine, start=(await server_today(env)).replace(day=1), expiry_days=21)
    async with running_worker(env.client, settings, engine, make_sim()):
        enrollment_id = await nominate_one(env, engine, settings, program, 63)
        await env.sleep(3 * DAY)
        await send_step(
            env.client, enrollment_id, EnrollmentWorkflow.verify, Verification(VERIFIER, True)
        )
        await env.sleep(30 * DAY)
        assert await state_of(env, enrollment_id) == "verified"
        await send_step(
            env.client, enrollment_id, EnrollmentWorkflow.withdraw, Withdrawal(OPERATOR, "done")
        )
    assert actions(engine, enrollment_id) == ["nominated", "verified", "withdrawn"]
