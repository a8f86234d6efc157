from __future__ import annotations

from models.tables import Program
from tests.harness import Rig, actions_of, committed_of, enroll, row_of, worker_row


async def test_a_list_becomes_active(rig: Rig, program: Program) -> None:
    ids = await enroll(rig, program, [worker_row(1), worker_row(2)])
    for enrollment_id in ids:
        row = row_of(rig.engine, enrollment_id)
        assert row.state == "active"
        assert row.kpj_number
    assert actions_of(rig.engine, ids[0]) == [
        "nominated",
        "verified",
        "budget_approved",
        "registration_started",
        "activated",
    ]
    assert committed_of(rig.engine, program.code) == 2 * row_of(rig.engine, ids[0]).premium_idr
