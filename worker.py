"""One rentan worker process: runs enrollment workflows and their activities.

``python worker.py`` (or ``rentan worker``) connects to the configured Temporal and polls the
task queue until SIGINT/SIGTERM; then it stops taking work, lets in-flight tasks finish and
shuts down before the event loop closes (the SDK aborts otherwise). Start as many as needed:
Temporal spreads the work between them.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

import uvloop
from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.batch_steps import BatchActivities
from activities.bpjs import BpjsActivities, BpjsAdapter, HttpBpjsAdapter
from activities.recording import Recording
from core import heap
from core.logs import configure_logging, get_logger
from core.sealing import sealer_for
from core.settings import Settings, get_settings
from core.temporal import connect, metrics_runtime
from models.db import make_engine
from workflows.batches import BATCH_WORKFLOWS
from workflows.enrollment import EnrollmentWorkflow

T = TypeVar("T")
WORKFLOWS = [EnrollmentWorkflow, *BATCH_WORKFLOWS]
# Projection writes are synchronous SQL: they run on threads so they never block the event loop.
# One thread per activity slot, so a slot never waits for a thread.
ACTIVITY_SLOTS = 32
# The domain's modules are pure (no clock, no randomness, no I/O) and hold the types workflow
# messages are made of: shared with the sandbox, so pydantic resolves those types in one place.
SANDBOX_RESTRICTIONS = SandboxRestrictions.default.with_passthrough_modules("domain")
WORKFLOW_CACHE = 2000


def worker_tuning(
    executor: ThreadPoolExecutor,
    *,
    sandboxed: bool = False,
    sticky_timeout: timedelta = timedelta(seconds=10),
) -> dict[str, Any]:
    """Slots, cache and runner of every worker, shared with the benchmark's floor worker so the
    floor runs on exactly the settings rentan runs on.

    Workflows run unsandboxed: the sandbox re-imports the workflow module for every workflow
    it loads, which the bench's profile put at a quarter of the worker's CPU.
    The test suite runs every workflow test sandboxed (``sandboxed=True``), so a
    non-deterministic call (clock, randomness, I/O) in workflow code still fails a test; recorded
    histories in tests/replay catch a change that breaks running workflows.
    """
    return {
        "workflow_runner": (
            SandboxedWorkflowRunner(restrictions=SANDBOX_RESTRICTIONS)
            if sandboxed
            else UnsandboxedWorkflowRunner()
        ),
        "activity_executor": executor,
        "max_concurrent_activities": ACTIVITY_SLOTS,
        "max_concurrent_local_activities": ACTIVITY_SLOTS,
        # Twice the SDK's default: with the cohort's villages in flight, 1000 evicted workflows
        # that then had to replay their whole history at their next step (the bench: ~10% of
        # the worker's CPU). About 110 KB each: ~220 MB at most.
        "max_cached_workflows": WORKFLOW_CACHE,
        # No external payload storage is configured, yet the SDK's storage pass over every
        # activation and completion runs as one asyncio task per payload when this is above 1.
        "max_workflow_task_external_storage_concurrency": 1,
        "graceful_shutdown_timeout": timedelta(seconds=10),
        "sticky_queue_schedule_to_start_timeout": sticky_timeout,
    }


def run_worker_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run a worker process's ``main`` on uvloop, as every worker (and the bench's floor) does.

    The worker's event loop carries every activation, activity task and writer answer: the
    bench's profile put a fifth of the main thread in asyncio's own loop machinery.
    Workflow code is unaffected: each workflow runs on the SDK's own deterministic loop.
    """
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def build_worker(
    client: Client,
    settings: Settings,
    *,
    engine: Engine,
    adapter: BpjsAdapter,
    executor: ThreadPoolExecutor,
    task_queue: str | None = None,
    sandboxed: bool = False,
) -> Worker:
    """A worker running every rentan workflow and activity on ``engine`` and ``adapter``."""
    recording = Recording(engine, sealer_for(settings))
    bpjs = BpjsActivities(adapter, write=recording.write)
    batches = BatchActivities(engine, recording)
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=WORKFLOWS,
        activities=[
            recording.record_steps,
            recording.open_renewal,
            bpjs.register_participant,
            bpjs.extend_participant,
            bpjs.end_coverage,
            batches.nominate_list,
            batches.verify_batch,
            batches.approve_budget_batch,
        ],
        **worker_tuning(
            executor,
            sandboxed=sandboxed,
            sticky_timeout=timedelta(seconds=settings.worker_sticky_timeout_s),
        ),
    )


async def run_worker(settings: Settings) -> None:
    log = get_logger("rentan.worker")
    client = await _connect_with_retry(settings)
    engine = make_engine(settings.resolved_database_url)
    adapter = HttpBpjsAdapter(settings.bpjs_base_url, timeout_s=settings.bpjs_timeout_s)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with ThreadPoolExecutor(max_workers=ACTIVITY_SLOTS, thread_name_prefix="rentan-db") as executor:
        worker = build_worker(client, settings, engine=engine, adapter=adapter, executor=executor)
        heap.settle()  # before the first workflow: what start-up allocated is walked no more
        heap.watch_pauses()
        async with worker:
            log.info("worker polling", task_queue=settings.task_queue)
            await stop.wait()
            log.info("worker stopping")
    await adapter.aclose()
    engine.dispose()


async def _connect_with_retry(settings: Settings, attempts: int = 60) -> Client:
    """Temporal may still be starting (``rentan up``, a rolling restart): wait for it."""
    log = get_logger("rentan.worker")
    runtime = metrics_runtime(settings.metrics_address) if settings.metrics_address else None
    if runtime is not None:
        log.info("metrics served", url=f"http://{settings.metrics_address}/metrics")
    for attempt in range(1, attempts + 1):
        try:
            return await connect(settings, identity=None, runtime=runtime)
        except RuntimeError as exc:
            if attempt == attempts:
                raise
            log.warning("temporal not reachable yet", attempt=attempt, error=str(exc)[:200])
            await asyncio.sleep(1.0)
    raise AssertionError("unreachable")


def main() -> None:
    settings = get_settings()
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    run_worker_loop(run_worker(settings))


if __name__ == "__main__":
    main()
