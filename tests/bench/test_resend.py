"""The floor's driver sends a call again when Temporal did not take it, and counts it; anything
else, or a call still not taken after the last resend, fails the run."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError

import rentan.bench.resend as resend
from rentan.bench.resend import RESENDS, Resends, again_if_not_sent


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resend, "FIRST_PAUSE_S", 0.0)


async def test_a_call_not_taken_is_sent_again_and_counted() -> None:
    attempts: list[int] = []

    async def call() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise WorkflowUpdateRPCTimeoutOrCancelledError()
        return "taken"

    resends = Resends()
    assert await again_if_not_sent(call, resends) == "taken"
    assert len(attempts) == 3 and resends.count == 2


async def test_a_call_never_taken_fails_after_the_last_resend() -> None:
    attempts: list[int] = []

    async def call() -> None:
        attempts.append(1)
        raise WorkflowUpdateRPCTimeoutOrCancelledError()

    resends = Resends()
    with pytest.raises(WorkflowUpdateRPCTimeoutOrCancelledError):
        await again_if_not_sent(call, resends)
    assert len(attempts) == RESENDS + 1 and resends.count == RESENDS


async def test_any_other_failure_is_not_sent_again() -> None:
    attempts: list[int] = []

    async def call() -> None:
        attempts.append(1)
        raise ValueError("refused")

    with pytest.raises(ValueError):
        await again_if_not_sent(call, Resends())
    assert len(attempts) == 1


def test_the_pauses_double(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resend, "FIRST_PAUSE_S", 1.0)
    assert resend.pauses() == [1.0, 2.0, 4.0]


async def test_a_call_its_task_group_cancels_is_not_sent_again() -> None:
    """The SDK raises a cancelled Update as timed out or cancelled: when another call fails and
    the task group cancels the rest, they stop instead of being sent again."""
    attempts: list[int] = []

    async def cancelled_update() -> None:
        attempts.append(1)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise WorkflowUpdateRPCTimeoutOrCancelledError() from None

    async def failing() -> None:
        await asyncio.sleep(0.01)
        raise ValueError("refused")

    resends = Resends()
    with pytest.raises(ExceptionGroup):
        async with asyncio.timeout(5), asyncio.TaskGroup() as group:
            group.create_task(again_if_not_sent(cancelled_update, resends))
            group.create_task(failing())
    assert len(attempts) == 1 and resends.count == 0
