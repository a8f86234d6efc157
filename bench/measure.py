"""What the bench measures besides wall time: per-process CPU and peak memory, open-loop latency.

CPU and memory come from ``/proc`` (Linux): ``utime + stime`` of the process and ``VmHWM``, the
kernel's own record of its peak resident set, so no sampling can miss a spike.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used so far (its threads included)."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name (field 2) may hold spaces: split after its closing parenthesis.
        fields = stat.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set so far (``VmHWM``), in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def reset_peak_rss(pid: int) -> None:
    """Start ``VmHWM`` again from the current resident set (so a phase's peak is its own)."""
    with open(f"/proc/{pid}/clear_refs", "w") as refs:
        refs.write("5")


@dataclass
class CpuWindow:
    """CPU seconds a process spends between ``start()`` and ``stop()``."""

    pid: int
    started: float = 0.0
    seconds: float = 0.0

    def start(self) -> None:
        self.started = cpu_seconds(self.pid)

    def stop(self) -> float:
        self.seconds = cpu_seconds(self.pid) - self.started
        return self.seconds


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (the value below which ``pct`` % of the samples fall)."""
    if not values:
        raise ValueError("no samples")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct * len(ordered) / 100)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Latencies:
    count: int
    failures: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float


def summarise(samples_s: list[float], failures: int = 0) -> Latencies:
    ms = [s * 1000 for s in samples_s]
    return Latencies(
        count=len(ms),
        failures=failures,
        p50_ms=percentile(ms, 50),
        p95_ms=percentile(ms, 95),
        p99_ms=percentile(ms, 99),
        max_ms=max(ms),
        mean_ms=statistics.fmean(ms),
    )


async def open_loop(
    call: Callable[[int], Awaitable[bool]], *, count: int, per_second: float
) -> Latencies:
    """Fire ``call(i)`` every ``1/per_second`` s whether or not earlier calls answered.

    Each call's latency runs from its scheduled moment, not from when the loop got round to it,
    so a stalled client cannot hide queueing (no coordinated omission). ``call`` returns whether
    the step succeeded; failures are counted, and their latencies kept too.
    """
    interval = 1.0 / per_second
    samples: list[float] = []
    failures = 0

    async def one(index: int, scheduled: float) -> None:
        nonlocal failures
        try:
            ok = await call(index)
        except Exception:  # a refused connection, an RPC error: a failed call, not a dead run
            ok = False
        samples.append(time.perf_counter() - scheduled)
        if not ok:
            failures += 1

    # The client's own heap (the cohort's lists, the clients) is put out of the collector's
    # reach meanwhile: a full collection in the measuring process would stall every call in
    # flight and be counted against the system measured.
    gc.collect()
    gc.freeze()
    try:
        began = time.perf_counter()
        tasks = []
        for index in range(count):
            scheduled = began + index * interval
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index, scheduled)))
        await asyncio.gather(*tasks)
    finally:
        gc.unfreeze()
    return summarise(samples, failures)
