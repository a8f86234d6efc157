"""The bench's drivers stop at their first failure and say what it was, at once."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from bench.floor import _gather_limited
from bench.run import _in_villages
from rentan import cohort


class Refused(RuntimeError):
    pass


async def test_the_floors_first_failure_cancels_the_calls_still_running_or_queued() -> None:
    started: list[int] = []
    cancelled: list[int] = []

    async def call(n: int) -> None:
        started.append(n)
        if n == 3:
            raise Refused("call 3")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(n)
            raise

    with pytest.raises(ExceptionGroup) as caught:
        await asyncio.wait_for(
            _gather_limited(4, [lambda n=n: call(n) for n in range(1000)]), timeout=10
        )
    assert [type(e) for e in caught.value.exceptions] == [Refused]
    # The failing call's place at the gate may go to one more before the cancellation lands;
    # the rest of the 1,000 never run, and every call still running is cancelled.
    assert len(started) <= 5
    assert sorted(cancelled) == sorted(set(started) - {3})


async def test_a_villages_failure_cancels_the_other_villages() -> None:
    lists = cohort.generate(400, period_start=dt.date(2026, 11, 1))
    assert len(lists) > 3
    failing = lists[1].village.code
    ran: list[str] = []

    async def run_one(item: cohort.VillageList) -> None:
        ran.append(item.village.code)
        if item.village.code == failing:
            raise Refused(failing)
        await asyncio.sleep(60)

    with pytest.raises(ExceptionGroup) as caught:
        await asyncio.wait_for(_in_villages(lists, 2, run_one), timeout=10)
    assert [str(e) for e in caught.value.exceptions] == [failing]
    assert len(ran) <= 3  # at most one more list starts before the cancellation lands
