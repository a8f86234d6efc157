"""Deadlines of the verification step as durable timers: a reminder after 7 days, escalation
after 14, and expiry where the program says so; time skipped on the session's test server."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from domain.worker_rows import WorkerRow
from models.tables import AuditEvent, Program
from services.steps import StepRefused, send_step
from tests.harness import (
    OPERATOR,
    VERIFIER,
    Rig,
    audit_of,
    eventually,
    make_program,
    nik,
    nominate_rows,
    row_of,
    server_today,
    stop_program,
    verify,
    view_of,
    worker_row,
)
from workflows.enrollment import EnrollmentWorkflow
from workflows.messages import Verification, Withdrawal

DAY = dt.timedelta(days=1)
_people = random.Random()


def someone() -> WorkerRow:
    born = dt.date(_people.randint(1970, 1999), _people.randint(1, 12), _people.randint(1, 28))
    serial = _people.randint(1000, 8999)
    return worker_row(
        serial, nik=nik(born.day, born.month, born.year, serial), birth_date=born.isoformat()
    )


@pytest.fixture
async def program_with(rig: Rig) -> AsyncIterator[Callable[..., Any]]:
    """Programs of this test's own, with the terms it needs, dated from the server's month."""
    codes: list[str] = []

    async def make(**terms: Any) -> Program:
        codes.append(f"T-{uuid.uuid4().hex[:10]}")
        start = (await server_today(rig.env)).replace(day=1)
        return make_program(rig.engine, code=codes[-1], start=start, **terms)

    yield make
    for code in codes:
        await stop_program(rig, code)


async def nominate_one(rig: Rig, program: Program, row: WorkerRow) -> str:
    result = await nominate_rows(rig, program, [row])
    (accepted,) = result.accepted
    return accepted.enrollment_id


def steps_of(rig: Rig, enrollment_id: str) -> list[AuditEvent]:
    return [e for e in audit_of(rig.engine, enrollment_id) if not e.action.startswith("refused")]


async def until_steps(rig: Rig, enrollment_id: str, count: int) -> list[AuditEvent]:
    """The enrollment's steps once there are ``count`` (a timer's step is written by a local
    activity after the skip)."""

    async def check() -> list[AuditEvent] | None:
        steps = steps_of(rig, enrollment_id)
        return steps if len(steps) >= count else None

    steps = await eventually(check, what=f"{count} steps of {enrollment_id}")
    assert len(steps) == count, [e.action for e in steps]
    return steps


async def test_unverified_nomination_is_reminded_escalated_and_expires(
    rig: Rig, program_with: Callable[..., Any]
) -> None:
    program = await program_with(expiry_days=21)
    row = someone()
    enrollment_id = await nominate_one(rig, program, row)

    await rig.env.sleep(6 * DAY)
    assert [e.action for e in steps_of(rig, enrollment_id)] == ["nominated"]

    await rig.env.sleep(2 * DAY)  # day 8
    reminder = (await until_steps(rig, enrollment_id, 2))[-1]
    assert (reminder.action, reminder.actor, reminder.role) == (
        "verification_reminder",
        "rentan",
        "system",
    )
    assert (reminder.state_before, reminder.state_after) == ("nominated", "nominated")
    assert reminder.reason == "not verified after 7 days"
    view = await view_of(rig.client, enrollment_id)
    assert (view.state, view.seq) == ("nominated", 2)
    assert (row_of(rig.engine, enrollment_id).state, row_of(rig.engine, enrollment_id).seq) == (
        "nominated",
        2,
    )

    await rig.env.sleep(7 * DAY)  # day 15
    escalated = (await until_steps(rig, enrollment_id, 3))[-1]
    assert (escalated.action, escalated.reason) == (
        "verification_escalated",
        "not verified after 14 days",
    )
    assert (await view_of(rig.client, enrollment_id)).state == "nominated"

    await rig.env.sleep(7 * DAY)  # day 22
    handle = rig.client.get_workflow_handle(enrollment_id)
    assert await handle.result() == "expired"
    view = await view_of(rig.client, enrollment_id)
    enrollment = row_of(rig.engine, enrollment_id)
    assert (view.state, view.seq) == (enrollment.state, enrollment.seq) == ("expired", 4)
    with pytest.raises(StepRefused):
        await send_step(
            rig.client, enrollment, EnrollmentWorkflow.verify, Verification(VERIFIER, True)
        )

    events = steps_of(rig, enrollment_id)
    assert [(e.action, e.actor, e.state_before, e.state_after) for e in events] == [
        ("nominated", OPERATOR.name, None, "nominated"),
        ("verification_reminder", "rentan", "nominated", "nominated"),
        ("verification_escalated", "rentan", "nominated", "nominated"),
        ("verification_expired", "rentan", "nominated", "expired"),
    ]
    assert events[-1].reason == "verification deadline passed"
    # Reminder, escalation and expiry about 7, 14 and 21 days after the nomination.
    nominated_at = events[0].occurred_at
    assert [round((e.occurred_at - nominated_at) / DAY) for e in events] == [0, 7, 14, 21]

    # An expired nomination may be made again in the same period: a new run.
    assert await nominate_one(rig, program, row) == enrollment_id
    again = row_of(rig.engine, enrollment_id)
    assert (again.state, again.seq) == ("nominated", 1)
    assert again.run_id != enrollment.run_id


async def test_without_expiry_a_nomination_waits_and_can_still_be_verified(
    rig: Rig, program: Program
) -> None:
    assert program.verification_expiry_days is None
    enrollment_id = await nominate_one(rig, program, someone())
    await rig.env.sleep(60 * DAY)
    steps = await until_steps(rig, enrollment_id, 3)
    assert [e.action for e in steps] == [
        "nominated",
        "verification_reminder",
        "verification_escalated",
    ]
    assert (await view_of(rig.client, enrollment_id)).state == "nominated"
    assert row_of(rig.engine, enrollment_id).state == "nominated"

    (outcome,) = await verify(rig, [enrollment_id], reason="late, but checked")
    assert (outcome.ok, outcome.state) == (True, "verified")
    assert row_of(rig.engine, enrollment_id).state == "verified"
    await send_step(
        rig.client,
        row_of(rig.engine, enrollment_id),
        EnrollmentWorkflow.withdraw,
        Withdrawal(OPERATOR, "done"),
    )
    assert row_of(rig.engine, enrollment_id).state == "withdrawn"
    assert len(steps_of(rig, enrollment_id)) == 5


async def test_verified_in_time_is_neither_reminded_nor_expired(
    rig: Rig, program_with: Callable[..., Any]
) -> None:
    program = await program_with(expiry_days=21)
    enrollment_id = await nominate_one(rig, program, someone())
    await rig.env.sleep(3 * DAY)
    (outcome,) = await verify(rig, [enrollment_id])
    assert outcome.ok
    await rig.env.sleep(30 * DAY)
    view = await view_of(rig.client, enrollment_id)
    assert (view.state, view.seq) == ("verified", 2)
    await send_step(
        rig.client,
        row_of(rig.engine, enrollment_id),
        EnrollmentWorkflow.withdraw,
        Withdrawal(OPERATOR, "done"),
    )
    assert [e.action for e in steps_of(rig, enrollment_id)] == [
        "nominated",
        "verified",
        "withdrawn",
    ]
