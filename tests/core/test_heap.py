"""The collector in long-running processes: start-up's objects settled, long pauses logged."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
import structlog
from structlog.testing import LogCapture, capture_logs

from core import heap
from core.logs import get_logger

PAUSE_EVENT = "garbage collection paused the process"


@pytest.fixture(autouse=True)
def restore_collector() -> Iterator[None]:
    """Put the test process's collector back as it was: nothing frozen, no watcher."""
    callbacks = gc.callbacks[:]
    yield
    gc.unfreeze()
    gc.callbacks[:] = callbacks
    heap._watching.clear()


class Node:
    """A container the collector tracks, able to sit in a reference cycle."""

    def __init__(self) -> None:
        self.partner: Node | None = None


def tracked_ids() -> set[int]:
    return {id(o) for o in gc.get_objects()}


def test_settle_puts_live_objects_out_of_every_later_walk() -> None:
    survivor = Node()
    with capture_logs() as logs:
        frozen = heap.settle()
    assert frozen > 0 and gc.get_freeze_count() > 0
    # A full collection walks what gc.get_objects() lists; the survivor is no longer among it.
    assert id(survivor) not in tracked_ids()
    assert [entry["frozen_objects"] for entry in logs if entry["event"] == "heap settled"] == [
        frozen
    ]

    later = Node()  # what the work allocates afterwards is walked as before
    assert id(later) in tracked_ids()


def test_settle_frees_garbage_rather_than_freezing_it() -> None:
    first, second = Node(), Node()
    first.partner, second.partner = second, first
    del first, second  # only their cycle keeps them: garbage only the collector can free
    heap.settle()
    gc.unfreeze()  # what settle() froze is listed again: the cycle must not be among it
    assert not any(isinstance(o, Node) for o in gc.get_objects())


def test_a_pause_longer_than_the_threshold_is_logged() -> None:
    with capture_logs() as logs:
        heap.watch_pauses(warn_ms=0.0)
        gc.collect()
    pauses = [entry for entry in logs if entry["event"] == PAUSE_EVENT]
    assert pauses, logs
    assert pauses[-1]["log_level"] == "warning"
    assert pauses[-1]["generation"] == 2
    assert pauses[-1]["paused_ms"] >= 0.0
    assert isinstance(pauses[-1]["collected"], int)


def test_a_short_pause_is_not_logged_and_watching_again_replaces_the_threshold() -> None:
    with capture_logs() as logs:
        heap.watch_pauses(warn_ms=0.0)
        heap.watch_pauses(warn_ms=60_000.0)  # replaces: one watcher, the new threshold
        gc.collect()
    assert [entry for entry in logs if entry["event"] == PAUSE_EVENT] == []
    assert sum(1 for cb in gc.callbacks if cb in heap._watching) == 1


def test_a_pause_is_logged_without_the_request_that_set_it_off() -> None:
    capture = LogCapture()
    saved = structlog.get_config()
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, capture],
        cache_logger_on_first_use=False,
    )
    try:
        structlog.contextvars.bind_contextvars(request_id="req-1")
        get_logger("rentan.test").info("control")  # an ordinary line carries the request id
        heap.watch_pauses(warn_ms=0.0)
        gc.collect()
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.configure(**saved)
    control = [e for e in capture.entries if e["event"] == "control"]
    pauses = [e for e in capture.entries if e["event"] == PAUSE_EVENT]
    assert control[0]["request_id"] == "req-1"
    assert pauses and all("request_id" not in e for e in pauses)
