"""The floor's worker process and its driver.

The worker runs in its own process, like rentan's, with rentan's data converter and worker
tuning (``worker.worker_tuning``); its local activity counts finished lifecycles (distinct
workflows ``floor-<n>``) in shared memory, which is how the driver knows the last one is done
without adding a step to the shape. Latency probes use other ids: they never finish.
The driver sends the calls rentan's batches send for a village list, with the same concurrency
(``activities.batch_steps.CONCURRENCY``): update-with-start per row, then an Update per row for
verification and for budget.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from temporalio import activity
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import (
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.worker import Worker

from activities.batch_steps import CONCURRENCY
from bench.floor_workflow import FLOOR_TASK_QUEUE, FLOOR_WORKFLOWS, FloorWorkflow, floor_register


def build_worker(
    client: Client,
    executor: ThreadPoolExecutor,
    record: Callable[[str], None],
    *,
    sandboxed: bool = False,
) -> Worker:
    """A floor worker on rentan's tuning; ``record`` is the local activity ``floor_record``."""
    from worker import worker_tuning

    return Worker(
        client,
        task_queue=FLOOR_TASK_QUEUE,
        workflows=FLOOR_WORKFLOWS,
        activities=[floor_register, record],
        **worker_tuning(executor, sandboxed=sandboxed),
    )


def _serve(
    env: dict[str, str], finished: Synchronized[int], seen: Any, ready: Any, stop: Any
) -> None:
    """The floor worker process's entry (spawned: a fresh interpreter, like ``rentan worker``)."""
    os.environ.update(env)
    from core import heap
    from core.logs import configure_logging
    from core.settings import get_settings
    from core.temporal import connect
    from worker import ACTIVITY_SLOTS, run_worker_loop

    settings = get_settings()
    configure_logging(level="WARNING", fmt="json")

    @activity.defn(name="floor_record")
    def floor_record(workflow_id: str) -> None:
        # Distinct workflows, not runs of this activity: a retried one must not count twice.
        index = int(workflow_id.rsplit("-", 1)[1])
        with finished.get_lock():
            if not seen[index]:
                seen[index] = 1
                finished.value += 1

    async def main() -> None:
        client = await connect(settings)
        with ThreadPoolExecutor(max_workers=ACTIVITY_SLOTS) as executor:
            worker = build_worker(client, executor, floor_record)
            heap.settle()  # as rentan's worker does (worker.run_worker)
            heap.watch_pauses()
            async with worker:
                ready.set()
                await asyncio.to_thread(stop.wait)

    run_worker_loop(main())


class FloorWorker:
    """The floor worker as a child process; ``finished`` counts completed lifecycles."""

    def __init__(self, env: dict[str, str], size: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.finished: Synchronized[int] = ctx.Value("q", 0)
        seen = ctx.RawArray("b", size)  # one flag per floor workflow, guarded by finished's lock
        self._ready = ctx.Event()
        self._stop = ctx.Event()
        self._process = ctx.Process(
            target=_serve,
            args=(env, self.finished, seen, self._ready, self._stop),
            daemon=True,
        )

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    def start(self, timeout_s: float = 60) -> None:
        self._process.start()
        if not self._ready.wait(timeout_s):
            self.stop()
            raise RuntimeError("the floor worker did not start")

    def stop(self) -> None:
        self._stop.set()
        self._process.join(30)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()


async def _gather_limited(limit: int, calls: Sequence[Any]) -> None:
    """Run ``calls`` at most ``limit`` at a time. The first failure cancels the calls still
    running or queued and, once they have stopped, is raised (in an ExceptionGroup): no call
    goes on as an orphan task behind a run that has already failed."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Any) -> None:
        async with gate:
            await call()

    async with asyncio.TaskGroup() as group:
        for call in calls:
            group.create_task(one(call))


@dataclass(frozen=True)
class Shape:
    """What a floor lifecycle starts: which workflow, with which search attributes."""

    workflow: str = "RentanFloor"
    search_attributes: TypedSearchAttributes = TypedSearchAttributes.empty


FLOOR = Shape()


async def nominate(client: Client, workflow_ids: list[str], shape: Shape = FLOOR) -> None:
    async def start(workflow_id: str) -> None:
        await client.execute_update_with_start_workflow(
            "nominate",
            "nominated",
            start_workflow_operation=WithStartWorkflowOperation(
                shape.workflow,
                workflow_id,
                id=workflow_id,
                task_queue=FLOOR_TASK_QUEUE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                search_attributes=shape.search_attributes,
            ),
            result_type=int,
        )

    await _gather_limited(CONCURRENCY, [lambda w=w: start(w) for w in workflow_ids])


async def verify_one(client: Client, workflow_id: str) -> None:
    await client.get_workflow_handle(workflow_id).execute_update(FloorWorkflow.verify, "verified")


async def step_all(client: Client, workflow_ids: list[str], update: str) -> None:
    async def one(workflow_id: str) -> None:
        # The workflow id as the argument: the variants' local activity takes it.
        await client.get_workflow_handle(workflow_id).execute_update(
            update, workflow_id, result_type=int
        )

    await _gather_limited(CONCURRENCY, [lambda w=w: one(w) for w in workflow_ids])


async def lifecycle(client: Client, workflow_ids: list[str], shape: Shape = FLOOR) -> None:
    """One village list's worth of bare lifecycles, up to the registration being scheduled."""
    await nominate(client, workflow_ids, shape)
    await step_all(client, workflow_ids, "verify")
    await step_all(client, workflow_ids, "approve_budget")
