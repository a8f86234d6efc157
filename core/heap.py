"""Garbage collection in rentan's long-running processes: the worker and the API.

A full collection stops the whole process while it walks every object the collector tracks, and
the worker answers every Update through one event loop. On the bench's 2-vCPU VM a full
collection cost about 1.2 µs per tracked object, so a worker holding its cache of workflows
(~86 tracked objects each) plus what start-up allocated (~170,000) paused for 0.2 to 0.9 s at a
time; callers arriving meanwhile queue behind it. Two measures:

- ``settle()``, once a process has set itself up: everything start-up allocated (modules, the
  SDK, the app) moves to the collector's permanent generation, which no collection walks again.
  Those objects are still freed when their last reference goes, but a reference cycle through
  one of them is never collected: right for what lives as long as the process.
- ``watch_pauses()``: a collection longer than ``PAUSE_WARN_MS`` is logged as a warning with its
  generation and duration, so an operator chasing a latency spike can tell a pause from the rest.
"""

from __future__ import annotations

import contextvars
import gc
import time
from collections.abc import Callable

from core.logs import get_logger

# Longer than any collection of a settled process's young generations, short enough that a pause
# an open-loop caller would notice (the bench's verification p99 target is 150 ms) is logged.
PAUSE_WARN_MS = 100.0

_watching: list[Callable[[str, dict[str, int]], None]] = []


def settle() -> int:
    """Collect once, then put what survives out of every later collection's walk; how many
    objects that was."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    get_logger("core.heap").info("heap settled", frozen_objects=frozen)
    return frozen


def watch_pauses(warn_ms: float = PAUSE_WARN_MS) -> None:
    """Log each collection that takes longer than ``warn_ms`` (once per process; later calls
    replace the threshold). Call it after ``settle()``, whose own collection is no pause of
    the work's."""
    log = get_logger("core.heap")
    started = 0.0

    def on_collection(phase: str, info: dict[str, int]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
            return
        if not started:  # installed in the middle of a collection: nothing to time
            return
        paused_ms = (time.perf_counter() - started) * 1000
        started = 0.0
        if paused_ms > warn_ms:
            # Called with the collector off: the log call cannot start another collection. In
            # an empty context: whichever request's allocation set the collection off did not
            # cause the pause, so its request id must not be on the line.
            contextvars.Context().run(
                log.warning,
                "garbage collection paused the process",
                generation=info["generation"],
                paused_ms=round(paused_ms, 1),
                collected=info["collected"],
            )

    for callback in _watching:
        if callback in gc.callbacks:
            gc.callbacks.remove(callback)
    _watching[:] = [on_collection]
    gc.callbacks.append(on_collection)
