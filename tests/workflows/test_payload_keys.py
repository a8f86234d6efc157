"""Payload keys: rotating the key with enrollments open (the new key encrypts, the old one,
kept in ``RENTAN_PAYLOAD_OLD_KEYS``, still decrypts what was sealed before, and the enrollments
finish), and a step sent unencrypted refused by the worker.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.converter import DataConverter

from core.codec import KEY_ID, PayloadKeyUnknown
from core.temporal import data_converter
from models.tables import Program
from tests.conftest import TEST_PAYLOAD_KEY, test_settings
from tests.harness import (
    Rig,
    fund,
    make_program,
    make_sim,
    nominate_rows,
    running_worker,
    server_today,
    stop_program,
    verify,
    worker_row,
)
from workflows.enrollment import EnrollmentWorkflow

NEW_KEY = base64.b64encode(b"n" * 32).decode()


@dataclasses.dataclass
class KeyedRig(Rig):
    """The session's server, seen through a client with keys of its own."""

    keyed: Client | None = None

    @property
    def client(self) -> Client:
        assert self.keyed is not None
        return self.keyed


def client_with(rig: Rig, settings: object) -> Client:
    config = rig.client.config()
    config["data_converter"] = data_converter(settings)  # type: ignore[arg-type]
    return Client(**config)


async def states(client: Client, ids: list[str]) -> list[str]:
    return [(await client.get_workflow_handle(i).query(EnrollmentWorkflow.view)).state for i in ids]


async def test_the_key_rotates_with_enrollments_open_and_they_finish(
    dev_rig: Rig, tmp_path: Path, db_url: str, engine: Engine
) -> None:
    """On the dev server: the old worker's sticky queue is handed back to the task queue
    after its timeout (1 s here), as in production; the time-skipping server keeps it."""
    rig = dev_rig
    old = test_settings(tmp_path / "old", db_url, worker_sticky_timeout_s=1.0)
    new = test_settings(
        tmp_path / "new",
        db_url,
        id_secret=old.id_secret,
        task_queue=old.task_queue,
        payload_key=NEW_KEY,
        payload_key_id="k2",
        payload_old_keys=f"k1:{TEST_PAYLOAD_KEY}",
    )
    without_old = test_settings(tmp_path / "lost", db_url, payload_key=NEW_KEY, payload_key_id="k2")
    start = (await server_today(rig.env)).replace(day=1)
    program = make_program(engine, code=f"T-{uuid.uuid4().hex[:10]}", start=start)
    sim = make_sim()
    before = KeyedRig(rig.env, engine, old, sim, keyed=client_with(rig, old))
    after = KeyedRig(rig.env, engine, new, sim, keyed=client_with(rig, new))
    try:
        async with running_worker(before.client, old, engine, sim.adapter):
            nominated = await nominate_rows(before, program, [worker_row(31), worker_row(32)])
            ids = [a.enrollment_id for a in nominated.accepted]
            assert len(ids) == 2
            assert await states(before.client, ids) == ["nominated", "nominated"]

        async with AsyncExitStack() as stack:
            await stack.enter_async_context(running_worker(after.client, new, engine, sim.adapter))
            # Deploy the new key everywhere: the workers and the API now encrypt with k2.
            assert all(o.ok for o in await verify(after, ids))
            approval = await fund(after, program, ids)
            assert all(o.ok for o in approval.outcomes), approval.outcomes
            for enrollment_id in ids:
                for _ in range(120):
                    if (await states(after.client, [enrollment_id]))[0] == "active":
                        break
                    await rig.env.sleep(1)
                else:
                    pytest.fail(f"{enrollment_id} never became active after the rotation")

            # Both keys are in the histories: k1 sealed the nominations, k2 what followed.
            history = await after.client.get_workflow_handle(ids[0]).fetch_history()
            accepted = [
                e.workflow_execution_update_accepted_event_attributes.accepted_request
                for e in history.events
                if e.HasField("workflow_execution_update_accepted_event_attributes")
            ]
            payloads = [p for request in accepted for p in request.input.args.payloads]
            assert {p.metadata[KEY_ID].decode() for p in payloads} == {"k1", "k2"}

            # Without the old key the nomination cannot be read (nor the run replayed): why it
            # is kept until no open workflow holds a payload it sealed.
            lost = data_converter(without_old).payload_codec
            assert lost is not None
            with pytest.raises(PayloadKeyUnknown, match="'k1'"):
                await lost.decode(payloads)
    finally:
        await stop_program(before, program.code)


async def test_a_step_sent_in_plain_is_refused_by_the_worker(rig: Rig, program: Program) -> None:
    """What anyone who reaches Temporal could send (the UI, the CLI): an Update whose payload
    is not encrypted. The worker does not decode it, and nothing is taken."""
    result = await nominate_rows(rig, program, [worker_row(41)])
    (enrollment_id,) = [a.enrollment_id for a in result.accepted]
    config = rig.client.config()
    config["data_converter"] = DataConverter.default
    plain = Client(**config)
    step = {"actor": {"name": "intruder", "role": "dpmd_verifier"}, "approve": True}
    with pytest.raises(WorkflowUpdateFailedError):
        await asyncio.wait_for(
            plain.get_workflow_handle(enrollment_id).execute_update("verify", step), timeout=20
        )
    view = await rig.client.get_workflow_handle(enrollment_id).query(EnrollmentWorkflow.view)
    assert view.state == "nominated"
    # Refused, not stalled: the enrollment takes its next (sealed) step at once.
    (verified,) = await verify(rig, [enrollment_id])
    assert (verified.ok, verified.state) == (True, "verified")
