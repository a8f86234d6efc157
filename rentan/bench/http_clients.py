"""CPU per BPJS request of the two HTTP clients at hand, against the real simulator.

``python -m rentan.bench.http_clients [--requests N] [--in-flight N]`` starts ``rentan
bpjs-sim`` on a free port of 127.0.0.1, then sends the same registrations through httpx and
through aiohttp (what ``activities.bpjs.AiohttpTransport`` uses), ``--in-flight`` at a time as
the worker's activity slots would, and prints each client's CPU seconds per request (this
process only: the simulator's CPU is the same for both). Two rounds each, after a warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpx

from rentan.stack import free_ports

Post = Callable[[dict[str, Any]], Awaitable[int]]


def _registration(serial: int, tag: str) -> dict[str, Any]:
    return {
        "idempotency_key": f"{tag}-{serial}",
        # A person nobody registered yet (serials 98xx and 99xx mean something to the simulator).
        "nik": f"160301150585{serial:04d}",
        "full_name": "Siti Aminah",
        "birth_date": "1985-05-15",
        "gender": "L",
        "category": "perangkat_desa",
        "village_code": "1603012001",
        "period_start": "2027-01-01",
        "period_end": "2027-12-31",
    }


async def _measure(
    name: str, post: Post, serials: range, in_flight: int, warm_up: int = 200
) -> None:
    gate = asyncio.Semaphore(in_flight)
    statuses: Counter[int] = Counter()

    async def one(serial: int) -> None:
        async with gate:
            statuses[await post(_registration(serial, name))] += 1

    await asyncio.gather(*(one(s) for s in serials[:warm_up]))  # connections, caches
    requests = len(serials) - warm_up
    began_cpu, began = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(s) for s in serials[warm_up:]))
    cpu = time.process_time() - began_cpu
    print(
        f"{name:8} {cpu / requests * 1e6:7.0f} us CPU per request, "
        f"{time.perf_counter() - began:5.1f} s wall, statuses {dict(statuses)}"
    )


async def _compare(base_url: str, requests: int, in_flight: int) -> None:
    async with httpx.AsyncClient() as probe:
        for _ in range(150):
            try:
                await probe.get(f"{base_url}/healthz")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    # Each measurement registers people of its own: every answer is a first registration (201).
    per_measurement = (9800 - 1000) // 4
    if requests + 200 > per_measurement:
        raise SystemExit(f"at most {per_measurement - 200} requests per client and round")
    slices = iter(
        range(1000 + i * per_measurement, 1000 + (i + 1) * per_measurement) for i in range(4)
    )
    for round_ in (1, 2):
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        async with httpx.AsyncClient(base_url=base_url, limits=limits) as client:

            async def via_httpx(body: dict[str, Any]) -> int:
                response = await client.post("/v1/participants", json=body)
                response.json()
                return response.status_code

            await _measure(f"httpx-{round_}", via_httpx, next(slices)[: requests + 200], in_flight)
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(base_url=base_url, connector=connector) as session:

            async def via_aiohttp(body: dict[str, Any]) -> int:
                async with session.post("/v1/participants", json=body) as response:
                    await response.read()
                    return response.status

            await _measure(
                f"aiohttp-{round_}", via_aiohttp, next(slices)[: requests + 200], in_flight
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=32)
    args = parser.parse_args()
    (port,) = free_ports(1)
    base_url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "RENTAN_BPJS_BASE_URL": base_url}
    sim = subprocess.Popen(
        [sys.executable, "-m", "rentan", "bpjs-sim"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        asyncio.run(_compare(base_url, args.requests, args.in_flight))
    finally:
        sim.terminate()
        sim.wait(timeout=10)


if __name__ == "__main__":
    main()
