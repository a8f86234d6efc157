"""The embedded Temporal dev server as ``rentan up`` and ``python -m bench`` start it.

Its search attributes are registered at start-up, so it keeps them cached as a production
cluster does: workflows started with rentan's four attributes must not make the server read its
cluster metadata from SQLite (the dev server's default re-reads it at every workflow task
completion, start with attributes and visibility write: eleven reads per enrollment,
BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import Client

from bench import floor
from bench.run import start_temporal, temporal_child
from rentan.stack import free_ports
from worker import ACTIVITY_SLOTS
from workflows import search_attributes as sa

pytestmark = pytest.mark.stack
LIFECYCLES = 10
OPERATIONS = ("GetCurrentClusterMetadata", "UpdateWorkflowExecution")
# The floor's lifecycle started with rentan's four attributes, with values of the cohort's shape.
WITH_RENTANS_ATTRIBUTES = floor.Shape(
    search_attributes=sa.for_enrollment("ME-202611", "16.03.03.2001", "16.03.03", "linmas")
)


def _persistence_requests(metrics_port: int, operation: str) -> float:
    """How often the server has run ``operation`` on its database so far."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read()
    wanted = f'operation="{operation}"'
    total = 0.0
    for line in text.decode().splitlines():
        if line.startswith("persistence_requests{") and wanted in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _settled(metrics_port: int, at_least: dict[str, float]) -> dict[str, float]:
    """The counters once they show ``at_least`` and one more report after that: the server
    publishes its metrics periodically, so a read right after the work may not show it yet."""
    for _ in range(300):
        counts = {op: _persistence_requests(metrics_port, op) for op in OPERATIONS}
        if all(counts[op] >= n for op, n in at_least.items()):
            await asyncio.sleep(2.0)
            return {op: _persistence_requests(metrics_port, op) for op in OPERATIONS}
        await asyncio.sleep(0.1)
    raise AssertionError(f"the server's counters never reached {at_least}: {counts}")


@activity.defn(name="floor_record")
def _record(workflow_id: str) -> None:
    """The floor's activation record: nothing to count here."""


async def test_search_attributes_are_cached_and_searchable(tmp_path: Path) -> None:
    _, settings, temporal = temporal_child(tmp_path)
    [metrics_port] = free_ports(1)
    temporal.argv += ["--metrics-port", str(metrics_port)]
    await start_temporal(settings, temporal)
    try:
        client = await Client.connect(
            settings.temporal_address, namespace=settings.temporal_namespace
        )
        shape = WITH_RENTANS_ATTRIBUTES
        village = next(p.value for p in shape.search_attributes if p.key == sa.VILLAGE)
        with ThreadPoolExecutor(max_workers=ACTIVITY_SLOTS) as executor:
            async with floor.build_worker(client, executor, _record):
                await floor.lifecycle(client, ["warm-up"], shape)
                before = await _settled(metrics_port, {op: 1.0 for op in OPERATIONS[1:]})
                # Each a start with the attributes, three Updates and their workflow tasks.
                await floor.lifecycle(client, [f"w-{i}" for i in range(LIFECYCLES)], shape)
                after = await _settled(
                    metrics_port,
                    {"UpdateWorkflowExecution": before["UpdateWorkflowExecution"] + LIFECYCLES},
                )
                done = {op: after[op] - before[op] for op in OPERATIONS}
        query = f"RentanVillage = '{village}'"
        for _ in range(100):  # visibility is written asynchronously
            found = [w.id async for w in client.list_workflows(query)]
            if len(found) == LIFECYCLES + 1:
                break
            await asyncio.sleep(0.1)
        assert len(found) == LIFECYCLES + 1
        # The dev server's default read the metadata seven to nine times per lifecycle here.
        assert done["GetCurrentClusterMetadata"] < LIFECYCLES
    finally:
        temporal.stop()
