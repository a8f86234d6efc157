"""What each of rentan's extras over the floor costs the Temporal server and the worker.

``python -m rentan.bench.extras --size 1000 --rounds 3`` runs the floor's lifecycle and, one at a
time, the floor plus one extra (``floor_workflow``'s variants, or rentan's search attributes at
start), each pass on a fresh dev server with a fresh floor worker, driven as the bench drives the
floor (village lists of 100, four at once). The order rotates from round to round, and the figures
are medians over rounds: one pass alone moves by more than an extra costs on a noisy machine.
Prints CPU per lifecycle of the server and of the worker, and each extra's difference from the
floor in the same round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from temporalio.common import SearchAttributePair, TypedSearchAttributes

from rentan.bench import floor
from rentan.bench.measure import cpu_seconds
from rentan.bench.run import say, start_temporal, temporal_child
from rentan.logs import configure_logging
from rentan.temporal import connect
from workflows import search_attributes as sa

LIST_SIZE = 100
LISTS_AT_ONCE = 4
# Rentan's four search attributes at start, with values of the cohort's shape.
RENTAN_SEARCH_ATTRIBUTES = TypedSearchAttributes(
    [
        SearchAttributePair(sa.PROGRAM, "ME-202611"),
        SearchAttributePair(sa.VILLAGE, "16.03.03.2001"),
        SearchAttributePair(sa.DISTRICT, "16.03.03"),
        SearchAttributePair(sa.CATEGORY, "linmas"),
    ]
)
VARIANTS: dict[str, floor.Shape] = {
    "floor": floor.FLOOR,
    "search_attributes": floor.Shape(search_attributes=RENTAN_SEARCH_ATTRIBUTES),
    "reminder": floor.Shape("RentanFloorWithReminder"),
    "verification_record": floor.Shape("RentanFloorWithVerificationRecord"),
    "nomination_record": floor.Shape("RentanFloorWithNominationRecord"),
}


@dataclass(frozen=True)
class Pass:
    variant: str
    round: int
    seconds: float
    server_ms: float  # CPU per lifecycle
    worker_ms: float


async def run_pass(variant: str, round_: int, size: int) -> Pass:
    with tempfile.TemporaryDirectory(prefix="rentan-extras-") as directory:
        env, settings, temporal = temporal_child(Path(directory))
        try:
            server_pid = await start_temporal(settings, temporal)
            worker = floor.FloorWorker(env, size)
            worker.start()
            try:
                client = await connect(settings, identity="rentan-bench-extras")
                ids = [f"{variant}-{i}" for i in range(size)]
                lists = [ids[i : i + LIST_SIZE] for i in range(0, size, LIST_SIZE)]
                gate = asyncio.Semaphore(LISTS_AT_ONCE)

                async def one(workflow_ids: list[str]) -> None:
                    async with gate:
                        await floor.lifecycle(client, workflow_ids, VARIANTS[variant])

                server_0, worker_0 = cpu_seconds(server_pid), cpu_seconds(worker.pid)
                started = time.perf_counter()
                await asyncio.gather(*(one(item) for item in lists))
                while worker.finished.value < size:  # noqa: ASYNC110 (shared memory: polled)
                    await asyncio.sleep(0.05)
                seconds = time.perf_counter() - started
                server_s = cpu_seconds(server_pid) - server_0
                worker_s = cpu_seconds(worker.pid) - worker_0
            finally:
                worker.stop()
        finally:
            temporal.stop()
    return Pass(variant, round_, seconds, server_s / size * 1000, worker_s / size * 1000)


def summary(passes: list[Pass]) -> dict[str, dict[str, float]]:
    """Per variant: medians over rounds, and the median of its difference from the floor's
    pass in the same round."""
    floor_of = {p.round: p for p in passes if p.variant == "floor"}
    result: dict[str, dict[str, float]] = {}
    for variant in VARIANTS:
        mine = [p for p in passes if p.variant == variant]
        if not mine:
            continue
        paired = [(p, floor_of[p.round]) for p in mine if p.round in floor_of]
        result[variant] = {
            "passes": len(mine),
            "seconds": statistics.median(p.seconds for p in mine),
            "server_ms": statistics.median(p.server_ms for p in mine),
            "worker_ms": statistics.median(p.worker_ms for p in mine),
            "server_ms_over_floor": statistics.median(p.server_ms - f.server_ms for p, f in paired),
            "worker_ms_over_floor": statistics.median(p.worker_ms - f.worker_ms for p, f in paired),
        }
    return result


async def main(size: int, rounds: int, variants: list[str]) -> list[Pass]:
    passes: list[Pass] = []
    for round_ in range(rounds):
        # Rotated each round, so no variant always runs first on a cold machine.
        order = variants[round_ % len(variants) :] + variants[: round_ % len(variants)]
        for variant in order:
            done = await run_pass(variant, round_, size)
            say(
                f"round {round_ + 1} {variant:20} {done.seconds:6.1f} s  server "
                f"{done.server_ms:6.2f} ms  worker {done.worker_ms:5.2f} ms per lifecycle"
            )
            passes.append(done)
    return passes


def render(table: dict[str, dict[str, float]]) -> str:
    lines = [
        f"{'variant':20} {'s':>7} {'server ms':>10} {'worker ms':>10} {'+server':>8} {'+worker':>8}"
    ]
    for variant, row in table.items():
        lines.append(
            f"{variant:20} {row['seconds']:7.1f} {row['server_ms']:10.2f} {row['worker_ms']:10.2f}"
            f" {row['server_ms_over_floor']:+8.2f} {row['worker_ms_over_floor']:+8.2f}"
        )
    return "\n".join(lines)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000, help="lifecycles per pass")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}"
    )
    parser.add_argument("--json", action="store_true", help="the passes and the summary as JSON")
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or "floor" not in variants:
        parser.error(f"variants must include floor and come from {', '.join(VARIANTS)}")
    configure_logging(level="WARNING", fmt="console")  # stdout is the figures'
    passes = asyncio.run(main(args.size, args.rounds, variants))
    table = summary(passes)
    if args.json:
        print(json.dumps({"passes": [asdict(p) for p in passes], "summary": table}, indent=2))
    else:
        print(render(table))


if __name__ == "__main__":
    cli()
