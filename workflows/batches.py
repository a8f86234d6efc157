"""Batches of human steps, each a small durable workflow: a village's nomination list, a batch
verification, a budget approval.

Each runs one activity that sends the Updates to the enrollments' workflows and writes all the
records they answer with in one transaction (``activities.batch_steps``). Should a process die
on the way, the activity is run again: sent again, a batch's step is answered as the first time
(its id is the batch's), and writing a record twice changes nothing. So once Temporal has taken
a batch, every step in it reaches both the enrollments and the projection. The caller (the API)
waits for the workflow's result and answers with it.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.messages import (
        APPROVE_BUDGET_BATCH,
        NOMINATE_LIST,
        VERIFY_BATCH,
        BatchResult,
        BudgetBatch,
        NominationList,
        VerificationBatch,
    )

# A worker that dies mid-batch is noticed when its heartbeats (every second, whatever the batch
# is waiting for) stop; the batch then runs again on another worker, at once.
HEARTBEAT_TIMEOUT = timedelta(seconds=5)
# A list of 500 rows takes seconds; this only bounds a batch stuck for good.
BATCH_TIMEOUT = timedelta(minutes=30)
BATCH_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
)


async def _run_batch(activity: str, batch: object) -> BatchResult:
    return await workflow.execute_activity(
        activity,
        batch,
        result_type=BatchResult,
        start_to_close_timeout=BATCH_TIMEOUT,
        heartbeat_timeout=HEARTBEAT_TIMEOUT,
        retry_policy=BATCH_RETRY,
    )


@workflow.defn
class NominationListWorkflow:
    @workflow.run
    async def run(self, batch: NominationList) -> BatchResult:
        return await _run_batch(NOMINATE_LIST, batch)


@workflow.defn
class VerificationBatchWorkflow:
    @workflow.run
    async def run(self, batch: VerificationBatch) -> BatchResult:
        return await _run_batch(VERIFY_BATCH, batch)


@workflow.defn
class BudgetApprovalWorkflow:
    @workflow.run
    async def run(self, batch: BudgetBatch) -> BatchResult:
        return await _run_batch(APPROVE_BUDGET_BATCH, batch)


BATCH_WORKFLOWS = [NominationListWorkflow, VerificationBatchWorkflow, BudgetApprovalWorkflow]
