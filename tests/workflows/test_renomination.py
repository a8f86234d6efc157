"""Nominating again: a person rejected or withdrawn is nominated again in the same period, by
the same village or another; the new run continues the same enrollment and its records, keyed
by their run, sit beside the old run's: nothing collides, nothing is dropped."""

from __future__ import annotations

from sqlmodel import Session, select

from domain.records import Actor
from models.tables import AuditEvent, Program
from services.steps import send_step
from tests.harness import (
    OTHER_VILLAGE,
    Rig,
    actions_of,
    fund,
    nominate_rows,
    row_of,
    verify,
    view_of,
    wait_for_state,
    worker_row,
)
from workflows.enrollment import EnrollmentWorkflow
from workflows.messages import Withdrawal

OTHER_OPERATOR = Actor("op-pagar-dewa", "village_operator", OTHER_VILLAGE)


def runs_of(rig: Rig, enrollment_id: str) -> list[str]:
    with Session(rig.engine) as session:
        events = session.exec(
            select(AuditEvent).where(AuditEvent.enrollment_id == enrollment_id)
        ).all()
    return list(dict.fromkeys(e.run_id for e in sorted(events, key=lambda e: e.occurred_at)))


async def test_a_rejected_person_is_nominated_again_and_funded(rig: Rig, program: Program) -> None:
    (first,) = (await nominate_rows(rig, program, [worker_row(1)])).accepted
    [rejected] = await verify(rig, [first.enrollment_id], approve=False, reason="not on roster")
    assert rejected.state == "rejected"

    (again,) = (await nominate_rows(rig, program, [worker_row(1)])).accepted
    assert again.enrollment_id == first.enrollment_id
    assert row_of(rig.engine, again.enrollment_id).state == "nominated"
    assert all(o.ok for o in await verify(rig, [again.enrollment_id]))
    assert all(o.ok for o in (await fund(rig, program, [again.enrollment_id])).outcomes)
    await wait_for_state(rig.env, again.enrollment_id, "active")

    assert len(runs_of(rig, again.enrollment_id)) == 2
    assert actions_of(rig.engine, again.enrollment_id) == [
        "nominated",
        "rejected",
        "nominated",
        "verified",
        "budget_approved",
        "registration_started",
        "activated",
    ]
    assert row_of(rig.engine, again.enrollment_id).state == "active"


async def test_a_withdrawn_person_is_nominated_again_by_another_village(
    rig: Rig, program: Program
) -> None:
    (first,) = (await nominate_rows(rig, program, [worker_row(2)])).accepted
    row = row_of(rig.engine, first.enrollment_id)
    operator = Actor("op-embawang", "village_operator", row.village_code)
    await send_step(rig.client, row, EnrollmentWorkflow.withdraw, Withdrawal(operator, "moved"))

    result = await nominate_rows(
        rig, program, [worker_row(2)], village=OTHER_VILLAGE, actor=OTHER_OPERATOR
    )
    (again,) = result.accepted
    assert again.enrollment_id == first.enrollment_id
    shown = row_of(rig.engine, again.enrollment_id)
    assert (shown.state, shown.village_code) == ("nominated", OTHER_VILLAGE)
    view = await view_of(rig.client, shown.workflow_id)
    assert view.state == "nominated"
    assert len(runs_of(rig, again.enrollment_id)) == 2


async def test_an_active_person_is_not_nominated_twice(rig: Rig, program: Program) -> None:
    (first,) = (await nominate_rows(rig, program, [worker_row(3)])).accepted
    result = await nominate_rows(
        rig, program, [worker_row(3)], village=OTHER_VILLAGE, actor=OTHER_OPERATOR
    )
    assert result.accepted == []
    (refused,) = result.rejected
    assert refused.errors[0].field == "nik"
    assert "already nominated" in refused.errors[0].message
    assert row_of(rig.engine, first.enrollment_id).village_code != OTHER_VILLAGE


async def test_the_same_list_sent_again_changes_nothing(rig: Rig, program: Program) -> None:
    rows = [worker_row(4), worker_row(5)]
    first = await nominate_rows(rig, program, rows)
    again = await nominate_rows(rig, program, rows)
    assert [a.enrollment_id for a in again.accepted] == [a.enrollment_id for a in first.accepted]
    for accepted in again.accepted:
        assert actions_of(rig.engine, accepted.enrollment_id) == ["nominated"]
        assert len(runs_of(rig, accepted.enrollment_id)) == 1
