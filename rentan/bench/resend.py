"""Sending a call again when Temporal did not take it, as the regency's people would.

Under the seed cohort's load the dev server can miss its own deadline ("context deadline
exceeded") on one call in tens of thousands, on the floor's side and on rentan's alike
(BENCHMARKS.md, 2026-11-28). A village operator told "send the list again" sends it again; the
bench does the same, a bounded number of times, and counts each resend so the report shows
them. The floor's driver resends a call that raised; rentan's driver resends the rows or ids the
API answered "send it again" (``rentan.bench.ours``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from rentan.temporal import NOT_SENT_ERRORS

T = TypeVar("T")

# Attempts after the first, and the pause before the first of them (doubled each time).
RESENDS = 3
FIRST_PAUSE_S = 1.0


@dataclass
class Resends:
    """How many calls (floor) or rows and ids (rentan) one side sent again."""

    count: int = 0


def pauses() -> list[float]:
    """The pause before each resend: 1, 2, 4 s."""
    return [FIRST_PAUSE_S * 2**n for n in range(RESENDS)]


async def again_if_not_sent(call: Callable[[], Awaitable[T]], resends: Resends) -> T:
    """``call()``, sent again after a pause when Temporal did not take it; the last failure is
    raised."""
    for pause in pauses():
        try:
            return await call()
        except NOT_SENT_ERRORS:
            # The SDK raises a cancelled Update as timed out or cancelled: a call cancelled by
            # its task group (another call failed) is not sent again.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError from None
            resends.count += 1
            await asyncio.sleep(pause)
    return await call()
