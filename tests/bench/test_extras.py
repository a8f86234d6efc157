"""``rentan.bench.extras``: each variant adds exactly its extra to the floor's history, and the
summary pairs each extra with the floor's pass of the same round."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.common import TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment

from rentan.bench import floor
from rentan.bench.extras import VARIANTS, Pass, summary
from worker import ACTIVITY_SLOTS


def test_summary_takes_medians_and_pairs_by_round() -> None:
    passes = [
        Pass("floor", 0, 10.0, 20.0, 8.0),
        Pass("reminder", 0, 11.0, 23.0, 9.0),
        Pass("floor", 1, 12.0, 30.0, 10.0),  # a slow round: the pairing takes it out
        Pass("reminder", 1, 13.0, 32.0, 11.5),
        Pass("floor", 2, 10.0, 21.0, 8.0),
        Pass("reminder", 2, 11.0, 23.5, 9.0),
    ]
    table = summary(passes)
    assert table["floor"]["server_ms"] == 21.0
    assert table["floor"]["server_ms_over_floor"] == 0.0
    assert table["reminder"]["passes"] == 3
    assert table["reminder"]["server_ms"] == 23.5
    # Per round the server's differences are 3.0, 2.0 and 2.5, the worker's 1.0, 1.5 and 1.0.
    assert table["reminder"]["server_ms_over_floor"] == 2.5
    assert table["reminder"]["worker_ms_over_floor"] == 1.0
    assert "search_attributes" not in table  # not run, not reported


@activity.defn(name="floor_record")
def _record(workflow_id: str) -> None:
    """The floor worker's counter lives in its process; here nothing needs counting."""


def _pairs(attributes: TypedSearchAttributes) -> dict[str, object]:
    return {pair.key.name: pair.value for pair in attributes}


async def _events(env: WorkflowEnvironment, workflow_id: str) -> Counter[str]:
    history = await env.client.get_workflow_handle(workflow_id).fetch_history()
    return Counter(EventType.Name(e.event_type) for e in history.events)


@pytest.mark.stack
async def test_each_variant_adds_its_extra_to_the_floors_history(
    dev_server_env: WorkflowEnvironment,
) -> None:
    env = dev_server_env
    run = uuid.uuid4().hex[:8]
    with ThreadPoolExecutor(max_workers=ACTIVITY_SLOTS) as executor:
        async with floor.build_worker(env.client, executor, _record, sandboxed=True):
            counts: dict[str, Counter[str]] = {}
            for variant, shape in VARIANTS.items():
                workflow_id = f"{variant}-{run}"
                await floor.lifecycle(env.client, [workflow_id], shape)
                handle = env.client.get_workflow_handle(workflow_id)
                # Done once the coverage timer is started (after the record's marker).
                for _ in range(200):
                    counts[variant] = await _events(env, workflow_id)
                    if counts[variant]["EVENT_TYPE_TIMER_STARTED"] >= (
                        2 if variant == "reminder" else 1
                    ):
                        break
                    await asyncio.sleep(0.05)
                if variant == "search_attributes":
                    described = await handle.describe()
                    # The server adds its own (BuildIds); rentan's four are there as given.
                    given = _pairs(shape.search_attributes).items()
                    assert given and given <= _pairs(described.typed_search_attributes).items()

    base = counts["floor"]
    assert base["EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED"] == 3
    assert base["EVENT_TYPE_MARKER_RECORDED"] == 1
    assert base["EVENT_TYPE_TIMER_STARTED"] == 1
    assert counts["search_attributes"] == base  # the extra is in visibility, not the history
    assert counts["reminder"] - base == Counter(
        {"EVENT_TYPE_TIMER_STARTED": 1, "EVENT_TYPE_TIMER_CANCELED": 1}
    )
    for variant in ("verification_record", "nomination_record"):
        assert counts[variant] - base == Counter({"EVENT_TYPE_MARKER_RECORDED": 1}), variant
    for variant in VARIANTS:
        assert base - counts[variant] == Counter(), variant  # nothing of the floor's is missing
