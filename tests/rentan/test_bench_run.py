"""The benchmark (``python -m bench``, also ``rentan bench``) end to end at a tiny size: it starts
its own stack, runs the floor and the cohort, measures, and reports every figure the issue asks
for, then leaves nothing running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.stack

SIZE = 20
PROBES = 20  # the fewest the bench takes
REQUIRED = {
    "enrollments_per_s",
    "floor_per_s",
    "ratio",
    "cpu_ratio",
    "verify_p99_ms",
    "floor_update_p99_ms",
    "history_p95_ms",
    "worker_peak_rss_mb",
}


def test_bench_reports_every_figure_and_stops_its_stack(tmp_path: Path) -> None:
    keep = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RENTAN_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            *("--size", str(SIZE), "--probes", str(PROBES), "--json", "--keep", str(keep)),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)
    assert figures.keys() >= REQUIRED
    assert "resends" not in figures  # no "send it again" healing any more
    assert figures["size"] == SIZE
    assert figures["verify_failures"] == 0 and figures["history_failures"] == 0
    assert figures["probe_detail"]["verify"]["count"] == PROBES
    assert figures["probe_detail"]["floor_update"]["count"] == PROBES
    assert figures["probe_detail"]["history"]["count"] == PROBES
    assert figures["total_s"] > 0 and figures["floor_total_s"] > 0
    # total_s and floor_total_s are rounded to 0.1 s; the ratio is of the unrounded times.
    ratio_low = (figures["total_s"] - 0.05) / (figures["floor_total_s"] + 0.05)
    ratio_high = (figures["total_s"] + 0.05) / (figures["floor_total_s"] - 0.05)
    assert ratio_low <= figures["ratio"] <= ratio_high
    assert 0 < figures["verify_p50_ms"] <= figures["verify_p99_ms"]
    assert 0 < figures["history_p50_ms"] <= figures["history_p95_ms"]
    assert figures["worker_peak_rss_mb"] > 0 and figures["worker_cpu_s"] > 0
    assert figures["temporal_cpu_s"] > 0 and figures["floor_temporal_cpu_s"] > 0
    # All processes' CPU of each side, the drivers included, one over the other (each figure
    # rounded to 0.1 s; the ratio is of the unrounded ones).
    ours = [
        figures[f"{p}_cpu_s"] for p in ("worker", "temporal", "api", "bpjs_sim", "bench_driver")
    ]
    floors = [figures[f"floor_{p}_cpu_s"] for p in ("worker", "temporal", "driver")]
    slack_ours, slack_floor = 0.05 * len(ours), 0.05 * len(floors)
    assert sum(floors) > slack_floor
    cpu_low = (sum(ours) - slack_ours) / (sum(floors) + slack_floor)
    cpu_high = (sum(ours) + slack_ours) / (sum(floors) - slack_floor)
    assert cpu_low <= figures["cpu_ratio"] <= cpu_high
    # Every enrollment of the cohort went through the API to active (the bench waits for that).
    per_s = figures["enrollments_per_s"]
    assert SIZE / (figures["total_s"] + 0.05) <= per_s <= SIZE / (figures["total_s"] - 0.05)
    # Its stack is gone: no process is left that runs on the run's directory.
    logs = keep / "logs"
    assert {p.name for p in logs.iterdir()} >= {"temporal.log", "worker.log", "api.log"}
    assert "worker stopping" in (logs / "worker.log").read_text()
    assert "metrics served" in (logs / "worker.log").read_text()  # on a port of its own
    # Both settled their start-up heap (core.heap) before taking work.
    assert "heap settled" in (logs / "worker.log").read_text()
    assert "heap settled" in (logs / "api.log").read_text()
    assert processes_using(keep) == []


def processes_using(directory: Path) -> list[int]:
    """Pids whose command line or environment names ``directory`` (the bench's children)."""
    needle = str(directory).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (
                needle in (entry / "cmdline").read_bytes()
                or needle in (entry / "environ").read_bytes()
            ):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def test_rentan_bench_runs_the_bench_program_with_its_arguments() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rentan", "bench", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for option in ("--size", "--probes", "--json", "--keep"):
        assert option in done.stdout
