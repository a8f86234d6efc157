"""The projection's writes, called as the worker calls them, on both databases: each is
idempotent (a retried or replayed local activity writes nothing twice) and an older transition
never overwrites a newer one."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from activities.projection import ProjectionActivities, enrollment_id_for, program_terms
from models.tables import AuditEvent, Decision, Person
from tests.harness import OPERATOR, VERIFIER, VILLAGE, make_program, row_of
from workflows.messages import (
    SYSTEM,
    EnrollmentChanges,
    EnrollmentInput,
    NominationRecord,
    PersonData,
    Transition,
)

T0 = dt.datetime(2026, 10, 1, 9, 0, tzinfo=dt.UTC)
PERSON_KEY = "pk-projection-writes"


def nomination(engine: Engine, code: str, *, phone: str | None, name: str) -> NominationRecord:
    program = make_program(engine, code=code, start=dt.date(2026, 10, 1))
    enrollment_id = enrollment_id_for(PERSON_KEY, code)
    return NominationRecord(
        input=EnrollmentInput(
            enrollment_id=enrollment_id,
            program=program_terms(program),
            person=PersonData(
                nik="1603011505850001",
                full_name=name,
                birth_date=dt.date(1985, 5, 15),
                gender="F",
                phone=phone,
            ),
            person_key=PERSON_KEY,
            village_code=VILLAGE,
            district_code="16.03.01",
            category="guru_ngaji",
            declared_income_idr=1_000_000,
            premium_idr=16_800 * 3,
            nominated_by=OPERATOR,
        ),
        workflow_id=enrollment_id,
        run_id="run-1",
        occurred_at=T0,
    )


def step(enrollment_id: str, seq: int, action: str, before: str, after: str) -> Transition:
    human = action == "verified"
    return Transition(
        enrollment_id=enrollment_id,
        workflow_id=enrollment_id,
        run_id="run-1",
        seq=seq,
        action=action,
        actor=VERIFIER if human else SYSTEM,
        state_before=before,
        state_after=after,
        occurred_at=T0 + dt.timedelta(minutes=seq),
        reason="matches DPMD records" if human else "",
        human=human,
    )


def audit_keys(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.exec(select(AuditEvent.event_key).order_by(col(AuditEvent.id))).all())


async def test_nomination_and_steps_are_written_once_however_often_they_run(
    engine: Engine,
) -> None:
    projection = ProjectionActivities(engine)
    record = nomination(engine, "ME-A", phone="081234567890", name="Siti Aminah")
    enrollment_id = record.input.enrollment_id
    assert (await projection.record_nomination(record)).recorded
    assert (await projection.record_nomination(record)).recorded  # a retry of the same call

    verified = step(enrollment_id, 2, "verified", "nominated", "verified")
    for _ in range(2):
        await projection.record_transitions([verified])
    # A late write of an older step (seq 2) after a newer one (seq 3) changes nothing.
    approved = dataclasses.replace(
        step(enrollment_id, 3, "budget_approved", "verified", "budget_approved"),
        changes=EnrollmentChanges(funding_source="APBD"),
    )
    await projection.record_transitions([approved])
    await projection.record_transitions([verified])

    row = row_of(engine, enrollment_id)
    assert (row.state, row.seq, row.funding_source) == ("budget_approved", 3, "APBD")
    assert audit_keys(engine) == [f"{enrollment_id}#{n}" for n in (1, 2, 3)]
    with Session(engine) as session:
        decisions = session.exec(select(Decision)).all()
    assert [(d.action, d.actor, d.event_key) for d in decisions] == [
        ("verified", VERIFIER.name, f"{enrollment_id}#2")
    ]


async def test_a_second_nomination_updates_the_person_and_keeps_a_phone_left_blank(
    engine: Engine,
) -> None:
    projection = ProjectionActivities(engine)
    await projection.record_nomination(
        nomination(engine, "ME-A", phone="081234567890", name="Siti Aminah")
    )
    await projection.record_nomination(nomination(engine, "ME-B", phone=None, name="Siti Aminah S"))
    with Session(engine) as session:
        person = session.get(Person, PERSON_KEY)
    assert person is not None
    assert (person.full_name, person.phone) == ("Siti Aminah S", "081234567890")
    await projection.record_nomination(
        nomination(engine, "ME-C", phone="081299990000", name="Siti Aminah S")
    )
    with Session(engine) as session:
        person = session.get(Person, PERSON_KEY)
    assert person is not None and person.phone == "081299990000"
