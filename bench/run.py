"""``rentan bench``: one run, the floor first, then rentan, on a fresh embedded stack.

The stack is the embedded one (Temporal dev server with the same SQLite pragmas and search
attributes, SQLite projection, BPJS simulator, worker and API as child processes) in a temporary
directory on free ports, so a running ``rentan up`` is left alone. The floor and rentan share the
server, the converter and the worker tuning; the floor goes first, so rentan runs against a
server already holding the floor's open workflows (if anything, that favours the floor).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import floor
from bench.drivers import (
    REQUEST_TIMEOUT_S,
    ApiDriver,
    count_in_state,
    program_body,
    village_operator_keys,
    wait_for_count,
)
from bench.measure import (
    CpuWindow,
    Latencies,
    open_loop,
    peak_rss_mb,
    reset_peak_rss,
)
from core.settings import Settings
from core.temporal import connect
from models.db import make_engine
from models.migrate import upgrade
from rentan import cohort
from rentan.demo import period_for
from rentan.stack import (
    Child,
    answers_200,
    free_ports,
    rentan_argv,
    temporal_dev_server_argv,
    temporal_ready,
    wait_until,
)
from services.keys import ensure_dev_keys

PROGRAM = "BENCH"
PROBE_PROGRAM = "BENCH-PROBE"
PROBE_RATE_PER_S = 20.0


@dataclass
class BenchOptions:
    size: int = cohort.SEED_TOTAL
    probes: int = 400  # single verifications (and bare updates, and history reads) sampled
    villages_at_once: int = 4
    keep: Path | None = None  # keep the run's directory (logs, databases) here


@dataclass
class Side:
    """One side's figures: the floor's or rentan's."""

    seconds: float = 0.0
    per_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    step: Latencies | None = None


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextmanager
def _workdir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    path = Path(tempfile.mkdtemp(prefix="rentan-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _env(workdir: Path) -> dict[str, str]:
    temporal_port, ui_port, api_port, sim_port, metrics_port = free_ports(5)
    return {
        "RENTAN_ENV": "embedded",
        "RENTAN_DATA_DIR": str(workdir),
        "RENTAN_DATABASE_URL": "",
        "RENTAN_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "RENTAN_TEMPORAL_UI_PORT": str(ui_port),
        "RENTAN_API_PORT": str(api_port),
        "RENTAN_BPJS_BASE_URL": f"http://127.0.0.1:{sim_port}",
        "RENTAN_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
        "RENTAN_LOG_FORMAT": "json",
    }


def _settings(env: dict[str, str]) -> Settings:
    return Settings(
        env="embedded",
        data_dir=Path(env["RENTAN_DATA_DIR"]),
        database_url="",
        temporal_address=env["RENTAN_TEMPORAL_ADDRESS"],
        temporal_ui_port=int(env["RENTAN_TEMPORAL_UI_PORT"]),
        api_port=int(env["RENTAN_API_PORT"]),
        bpjs_base_url=env["RENTAN_BPJS_BASE_URL"],
    )


async def _progress(what: str, done: Callable[[], int], total: int) -> None:
    """A line every 10 s while a phase runs: long runs show they are moving."""
    started = time.monotonic()
    while True:
        await asyncio.sleep(10)
        count = done()
        rate = count / (time.monotonic() - started)
        say(f"{what}: {count:,}/{total:,} ({rate:.1f}/s)")


async def _in_villages(
    lists: list[cohort.VillageList],
    at_once: int,
    run_one: Callable[[cohort.VillageList], Awaitable[object]],
) -> None:
    """Each village's list through ``run_one``, ``at_once`` at a time; the first failure
    cancels the rest and, once they have stopped, is raised (in an ExceptionGroup)."""
    gate = asyncio.Semaphore(at_once)

    async def one(item: cohort.VillageList) -> None:
        async with gate:
            await run_one(item)

    async with asyncio.TaskGroup() as group:
        for item in lists:
            group.create_task(one(item))


def _probe_lists(lists: list[cohort.VillageList], count: int) -> list[cohort.VillageList]:
    """The first ``count`` people of the cohort, still grouped by village."""
    picked: list[cohort.VillageList] = []
    left = count
    for item in lists:
        if left <= 0:
            break
        rows = item.rows[:left]
        picked.append(cohort.VillageList(item.village, rows))
        left -= len(rows)
    return picked


async def _floor_side(
    settings: Settings,
    env: dict[str, str],
    lists: list[cohort.VillageList],
    options: BenchOptions,
    temporal_pid: int,
) -> Side:
    side = Side()
    worker = floor.FloorWorker(env, options.size)
    worker.start()
    try:
        client = await connect(settings, identity="rentan-bench-floor")
        windows = {
            "temporal": CpuWindow(temporal_pid),
            "worker": CpuWindow(worker.pid),
            "bench": CpuWindow(os.getpid()),
        }
        for window in windows.values():
            window.start()
        counter = iter(range(10**9))
        ids_of = {
            item.village.code: [f"floor-{next(counter)}" for _ in item.rows] for item in lists
        }
        started = time.perf_counter()
        ticker = asyncio.create_task(
            _progress("floor lifecycles", lambda: worker.finished.value, options.size)
        )
        await _in_villages(
            lists,
            options.villages_at_once,
            lambda item: floor.lifecycle(client, ids_of[item.village.code]),
        )
        # A counter in shared memory, bumped by the floor worker's process: polled.
        while worker.finished.value < options.size:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        side.seconds = time.perf_counter() - started
        ticker.cancel()
        side.cpu_s = {name: w.stop() for name, w in windows.items()}
        side.per_s = options.size / side.seconds
        say(f"floor: {options.size:,} lifecycles in {side.seconds:.1f} s ({side.per_s:.1f}/s)")

        probe_ids = [f"floor-probe-{i}" for i in range(options.probes)]
        await floor.nominate(client, probe_ids)
        await asyncio.sleep(2)  # let the nominations settle: the probe measures updates alone

        async def verify(index: int) -> bool:
            await floor.verify_one(client, probe_ids[index])
            return True

        side.step = await open_loop(verify, count=options.probes, per_second=PROBE_RATE_PER_S)
        say(
            f"floor update at {PROBE_RATE_PER_S:.0f}/s: "
            f"p50 {side.step.p50_ms:.0f} ms, p99 {side.step.p99_ms:.0f} ms"
        )
        side.peak_rss_mb = {
            "worker": peak_rss_mb(worker.pid),
            "temporal": peak_rss_mb(temporal_pid),
        }
    finally:
        worker.stop()
    return side


async def _rentan_side(
    settings: Settings,
    env: dict[str, str],
    lists: list[cohort.VillageList],
    options: BenchOptions,
    children: dict[str, Child],
    workdir: Path,
) -> tuple[Side, Latencies]:
    side = Side()
    engine = make_engine(settings.resolved_database_url)
    tasks: list[asyncio.Task[None]] = []
    try:
        role_keys = json.loads((workdir / "dev-keys.json").read_text())["keys"]
        operator_keys = village_operator_keys(engine, (item.village.code for item in lists))
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.api_port}",
            timeout=REQUEST_TIMEOUT_S,
            limits=limits,
        ) as http:
            api = ApiDriver(http, role_keys, operator_keys)
            start = dt.date.today().replace(day=1)
            period_start, period_end = period_for(start)
            await api.create_program(program_body(PROGRAM, period_start, period_end, options.size))
            probe_start, probe_end = period_for(period_end + dt.timedelta(days=1))
            await api.create_program(
                program_body(PROBE_PROGRAM, probe_start, probe_end, options.size)
            )

            pids = {name: child.process.pid for name, child in children.items() if child.process}
            pids["bench"] = os.getpid()  # the driver: the people's HTTP clients
            windows = {name: CpuWindow(pid) for name, pid in pids.items()}
            for window in windows.values():
                window.start()
            active = 0

            def done() -> int:
                return active

            async def watch_active() -> None:
                nonlocal active
                while True:
                    active = await asyncio.to_thread(count_in_state, engine, PROGRAM, "active")
                    await asyncio.sleep(1)

            started = time.perf_counter()
            tasks.append(asyncio.create_task(watch_active()))
            tasks.append(
                asyncio.create_task(_progress("rentan enrollments active", done, options.size))
            )
            await _in_villages(
                lists, options.villages_at_once, lambda item: api.lifecycle(PROGRAM, item)
            )
            await wait_for_count(engine, PROGRAM, "active", options.size)
            side.seconds = time.perf_counter() - started
            for task in tasks:
                task.cancel()
            side.cpu_s = {name: w.stop() for name, w in windows.items()}
            side.per_s = options.size / side.seconds
            say(
                f"rentan: {options.size:,} enrollments active in {side.seconds:.1f} s "
                f"({side.per_s:.1f}/s)"
            )

            probe_ids: list[str] = []
            for item in _probe_lists(lists, options.probes):
                probe_ids += await api.nominate(PROBE_PROGRAM, item)
            await asyncio.sleep(2)
            side.step = await open_loop(
                lambda i: api.verify_one(probe_ids[i]),
                count=len(probe_ids),
                per_second=PROBE_RATE_PER_S,
            )
            say(
                f"rentan verification at {PROBE_RATE_PER_S:.0f}/s: "
                f"p50 {side.step.p50_ms:.0f} ms, p99 {side.step.p99_ms:.0f} ms"
            )

            page = await http.get(
                "/v1/enrollments",
                params={"program": PROGRAM, "limit": 500},
                headers={"Authorization": f"Bearer {role_keys['auditor']}"},
            )
            sample = [e["id"] for e in page.json()["items"]]
            rng = random.Random(7)
            history = await open_loop(
                lambda i: api.read_history(rng.choice(sample)),
                count=options.probes,
                per_second=PROBE_RATE_PER_S,
            )
            say(
                f"history reads at {PROBE_RATE_PER_S:.0f}/s: "
                f"p50 {history.p50_ms:.0f} ms, p95 {history.p95_ms:.0f} ms"
            )
            side.peak_rss_mb = {name: peak_rss_mb(pid) for name, pid in pids.items()}
    finally:
        for task in tasks:
            task.cancel()
        engine.dispose()
    return side, history


def temporal_child(workdir: Path) -> tuple[dict[str, str], Settings, Child]:
    """A Temporal dev server for a run in ``workdir`` (not started): its environment, settings
    and child process, on free ports with rentan's pragmas and search attributes."""
    env = _env(workdir)
    settings = _settings(env)
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    temporal = Child(
        "temporal", temporal_dev_server_argv(settings), env=env, log_path=logs / "temporal.log"
    )
    return env, settings, temporal


async def start_temporal(settings: Settings, temporal: Child) -> int:
    """Start the server and wait until it answers; its pid."""
    temporal.start()
    await wait_until(
        lambda: temporal_ready(settings), what="Temporal", timeout_s=60, children=[temporal]
    )
    assert temporal.process is not None
    return temporal.process.pid


async def run_bench(options: BenchOptions) -> dict[str, Any]:
    lists = cohort.generate(options.size, period_start=dt.date.today().replace(day=1))
    with _workdir(options.keep) as workdir:
        env, settings, temporal = temporal_child(workdir)
        logs = workdir / "logs"
        children: dict[str, Child] = {"temporal": temporal}
        try:
            temporal_pid = await start_temporal(settings, temporal)
            upgrade(settings.resolved_database_url)
            engine = make_engine(settings.resolved_database_url)
            ensure_dev_keys(engine, workdir)
            engine.dispose()
            sim = Child(
                "bpjs-sim", rentan_argv("bpjs-sim"), env=env, log_path=logs / "bpjs-sim.log"
            )
            sim.start()
            children["bpjs-sim"] = sim
            say(f"stack in {workdir}; floor first, {options.size:,} lifecycles")
            floor_side = await _floor_side(settings, env, lists, options, temporal_pid)
            # rentan's peak on the server is its own, not the floor's before it.
            reset_peak_rss(temporal_pid)

            for name in ("worker", "api"):
                child = Child(name, rentan_argv(name), env=env, log_path=logs / f"{name}.log")
                child.start()
                children[name] = child
            api_url = f"http://127.0.0.1:{settings.api_port}/readyz"
            await wait_until(
                lambda: answers_200(api_url),
                what="the API",
                timeout_s=90,
                children=list(children.values()),
            )
            say(f"rentan: {options.size:,} enrollments through the API")
            measured = {k: children[k] for k in ("temporal", "worker", "api", "bpjs-sim")}
            ours, history = await _rentan_side(settings, env, lists, options, measured, workdir)
        finally:
            for child in reversed(list(children.values())):
                child.stop()
    return _report(options, floor_side, ours, history)


def _report(
    options: BenchOptions,
    floor_side: Side,
    ours: Side,
    history: Latencies,
) -> dict[str, Any]:
    assert floor_side.step is not None and ours.step is not None
    return {
        "size": options.size,
        "enrollments_per_s": round(ours.per_s, 2),
        "floor_per_s": round(floor_side.per_s, 2),
        "ratio": round(ours.seconds / floor_side.seconds, 3),
        # Every process of each side, its driver included (the people's HTTP clients, the
        # floor's client).
        "cpu_ratio": round(sum(ours.cpu_s.values()) / sum(floor_side.cpu_s.values()), 3),
        "total_s": round(ours.seconds, 1),
        "floor_total_s": round(floor_side.seconds, 1),
        "verify_p50_ms": round(ours.step.p50_ms, 1),
        "verify_p99_ms": round(ours.step.p99_ms, 1),
        "floor_update_p50_ms": round(floor_side.step.p50_ms, 1),
        "floor_update_p99_ms": round(floor_side.step.p99_ms, 1),
        "verify_failures": ours.step.failures,
        "history_p50_ms": round(history.p50_ms, 1),
        "history_p95_ms": round(history.p95_ms, 1),
        "history_failures": history.failures,
        "worker_cpu_s": round(ours.cpu_s["worker"], 1),
        "temporal_cpu_s": round(ours.cpu_s["temporal"], 1),
        "api_cpu_s": round(ours.cpu_s["api"], 1),
        "bpjs_sim_cpu_s": round(ours.cpu_s["bpjs-sim"], 1),
        "bench_driver_cpu_s": round(ours.cpu_s["bench"], 1),
        "floor_worker_cpu_s": round(floor_side.cpu_s["worker"], 1),
        "floor_temporal_cpu_s": round(floor_side.cpu_s["temporal"], 1),
        "floor_driver_cpu_s": round(floor_side.cpu_s["bench"], 1),
        "worker_peak_rss_mb": round(ours.peak_rss_mb["worker"], 1),
        "temporal_peak_rss_mb": round(ours.peak_rss_mb["temporal"], 1),
        "api_peak_rss_mb": round(ours.peak_rss_mb["api"], 1),
        "floor_worker_peak_rss_mb": round(floor_side.peak_rss_mb["worker"], 1),
        "floor_temporal_peak_rss_mb": round(floor_side.peak_rss_mb["temporal"], 1),
        "probe_rate_per_s": PROBE_RATE_PER_S,
        "probes": options.probes,
        "probe_detail": {
            "verify": asdict(ours.step),
            "floor_update": asdict(floor_side.step),
            "history": asdict(history),
        },
    }
