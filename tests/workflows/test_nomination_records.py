"""A village's list writes its rows itself, in one transaction, from what the workflows hand back
(``rentan.nominations``): the nomination's Update runs no local activity. What this must not
lose: a row whose write failed is written by the same list sent again, or by the workflow itself
at its first reminder; a person someone else holds is refused, and the refused run fails (its id
stays free); one bad row does not cost the list its other rows."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlmodel import Session, select
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

import rentan.nominations as nominations
from activities.projection import enrollment_id_for, program_terms, write_nomination
from domain.errors import FieldError
from domain.nik import person_key
from models.db import session_scope
from models.tables import Enrollment, Program
from rentan.settings import Settings
from rentan.steps import send_step
from tests.harness import (
    OTHER_VILLAGE,
    VERIFIER,
    VILLAGE,
    audit_of,
    make_program,
    make_sim,
    nominate_rows,
    row_of,
    running_worker,
    server_today,
    worker_row,
)
from workflows.enrollment import EnrollmentWorkflow
from workflows.messages import (
    Actor,
    EnrollmentInput,
    NominationRecord,
    NominationRefusal,
    PersonData,
    Verification,
)

DAY = dt.timedelta(days=1)
SEND_AGAIN = "could not be recorded right now; send the list again"


def rows_in(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.exec(select(Enrollment.id)).all())


def failing_write(*_: Any, **__: Any) -> dict[str, str | None]:
    raise OperationalError("INSERT INTO enrollment ...", {}, Exception("disk I/O error"))


async def markers(env: WorkflowEnvironment, workflow_id: str) -> list[str]:
    """The markers in the workflow's history: one per local activity it ran."""
    history = await env.client.get_workflow_handle(workflow_id).fetch_history()
    return [
        event.marker_recorded_event_attributes.marker_name
        for event in history.events
        if event.HasField("marker_recorded_event_attributes")
    ]


def enrollment_of(settings: Settings, serial: int, program_code: str) -> str:
    key = person_key(worker_row(serial).nik or "", secret=settings.id_secret_bytes())
    return enrollment_id_for(key, program_code)


async def nominate_unwritten(
    env: WorkflowEnvironment,
    engine: Engine,
    settings: Settings,
    program: Program,
    serial: int,
    monkeypatch: pytest.MonkeyPatch,
) -> nominations.NominationResult:
    """One row nominated while the list's write fails: the workflow takes it, no row is
    written."""
    with monkeypatch.context() as patched:
        patched.setattr(nominations, "_write_rows", failing_write)
        return await nominate_rows(
            env.client,
            engine,
            settings,
            program,
            [worker_row(serial)],
            today=await server_today(env),
        )


async def test_a_list_writes_its_rows_and_the_update_runs_no_local_activity(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    env = time_skipping_env
    program = make_program(engine, start=(await server_today(env)).replace(day=1))
    async with running_worker(env.client, settings, engine, make_sim()):
        result = await nominate_rows(
            env.client,
            engine,
            settings,
            program,
            [worker_row(81), worker_row(82)],
            today=await server_today(env),
        )
        assert result.rejected == []
        ids = [a.enrollment_id for a in result.accepted]
        # Read your writes: the rows are there when the call answers.
        assert [row_of(engine, i).state for i in ids] == ["nominated", "nominated"]
        assert [e.action for e in audit_of(engine, ids[0])] == ["nominated"]
        assert await markers(env, ids[0]) == []


async def test_a_row_whose_write_failed_is_written_when_the_list_is_sent_again(
    time_skipping_env: WorkflowEnvironment,
    settings: Settings,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = time_skipping_env
    today = await server_today(env)
    program = make_program(engine, start=today.replace(day=1))
    async with running_worker(env.client, settings, engine, make_sim()):
        lost = await nominate_unwritten(env, engine, settings, program, 83, monkeypatch)
        assert lost.accepted == []
        (row,) = lost.rejected
        assert [(e.field, e.message) for e in row.errors] == [("row", SEND_AGAIN)]
        assert rows_in(engine) == []
        # The workflow holds the nomination meanwhile.
        enrollment_id = enrollment_of(settings, 83, program.code)
        view = await env.client.get_workflow_handle(enrollment_id).query(EnrollmentWorkflow.view)
        assert view.state == "nominated"

        again = await nominate_rows(
            env.client, engine, settings, program, [worker_row(83)], today=today
        )
        assert [a.enrollment_id for a in again.accepted] == [enrollment_id]
        assert row_of(engine, enrollment_id).state == "nominated"
        assert [e.action for e in audit_of(engine, enrollment_id)] == ["nominated"]

        # A step sent around the API (no projected_seq) makes the workflow write its row first,
        # idempotently; after that a third sending has nothing left to hand back.
        await send_step(
            env.client, enrollment_id, EnrollmentWorkflow.verify, Verification(VERIFIER, True)
        )
        third = await nominate_rows(
            env.client, engine, settings, program, [worker_row(83)], today=today
        )
        assert [(a.enrollment_id, a.state) for a in third.accepted] == [(enrollment_id, "verified")]
        assert [e.action for e in audit_of(engine, enrollment_id)] == ["nominated", "verified"]


async def test_a_row_nobody_wrote_is_written_by_the_workflow_at_its_reminder(
    time_skipping_env: WorkflowEnvironment,
    settings: Settings,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = time_skipping_env
    today = await server_today(env)
    program = make_program(engine, start=today.replace(day=1))
    async with running_worker(env.client, settings, engine, make_sim()):
        lost = await nominate_unwritten(env, engine, settings, program, 84, monkeypatch)
        assert [e.message for e in lost.rejected[0].errors] == [SEND_AGAIN]
        await env.sleep(6 * DAY)
        assert rows_in(engine) == []

        await env.sleep(2 * DAY)  # the reminder, on day 7
        (enrollment_id,) = rows_in(engine)
        row = row_of(engine, enrollment_id)
        assert (row.state, row.seq) == ("nominated", 2)
        events = audit_of(engine, enrollment_id)
        assert [e.action for e in events] == ["nominated", "verification_reminder"]
        # The nomination keeps its own time, not the reminder's.
        assert round((events[1].occurred_at - events[0].occurred_at) / DAY) == 7
        assert events[0].actor == "op-embawang"


async def test_a_person_someone_else_holds_is_refused_and_the_run_fails(
    time_skipping_env: WorkflowEnvironment,
    settings: Settings,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = time_skipping_env
    today = await server_today(env)
    program = make_program(engine, start=today.replace(day=1))
    real_write = nominations._write_rows

    def held_meanwhile(
        engine_: Engine, records: list[NominationRecord], *, isolated: bool
    ) -> dict[str, str | None]:
        # Between the Update and the write another workflow (a renewal's reservation) took the
        # person's period for another village.
        with session_scope(engine_) as session:
            for record in records:
                holder = dataclasses.replace(
                    record,
                    workflow_id="enr_held_elsewhere",
                    input=dataclasses.replace(record.input, village_code=OTHER_VILLAGE),
                )
                write_nomination(session, holder)
        return real_write(engine_, records, isolated=isolated)

    async with running_worker(env.client, settings, engine, make_sim()):
        with monkeypatch.context() as patched:
            patched.setattr(nominations, "_write_rows", held_meanwhile)
            result = await nominate_rows(
                env.client, engine, settings, program, [worker_row(85)], today=today
            )
        assert result.accepted == []
        (refused,) = result.rejected
        (error,) = refused.errors
        assert error.field == "nik"
        assert f"by village {OTHER_VILLAGE}" in error.message
        (enrollment_id,) = rows_in(engine)
        assert enrollment_id in error.message
        handle = env.client.get_workflow_handle(enrollment_id)
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        assert isinstance(failed.value.cause, ApplicationError)
        assert failed.value.cause.type == "DuplicateNomination"
        assert failed.value.cause.message == error.message
        assert (await handle.describe()).status == WorkflowExecutionStatus.FAILED
        assert row_of(engine, enrollment_id).workflow_id == "enr_held_elsewhere"


async def test_a_step_whose_caller_found_the_row_does_not_write_it_again(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> None:
    """The API sends a step with the seq of the row it found the enrollment by; a step sent
    around the API (by workflow id, no seq) makes the workflow write its row first."""
    env = time_skipping_env
    today = await server_today(env)
    program = make_program(engine, start=today.replace(day=1))
    async with running_worker(env.client, settings, engine, make_sim()):
        result = await nominate_rows(
            env.client, engine, settings, program, [worker_row(86), worker_row(87)], today=today
        )
        via_api, around = (a.enrollment_id for a in result.accepted)
        await send_step(
            env.client,
            via_api,
            EnrollmentWorkflow.verify,
            Verification(VERIFIER, True, projected_seq=row_of(engine, via_api).seq),
        )
        await send_step(env.client, around, EnrollmentWorkflow.verify, Verification(VERIFIER, True))
        # One local activity (the verification's record), against two: the row, then the record.
        assert len(await markers(env, via_api)) == 1
        assert len(await markers(env, around)) == 2
        for enrollment_id in (via_api, around):
            assert row_of(engine, enrollment_id).state == "verified"
            actions = [e.action for e in audit_of(engine, enrollment_id)]
            assert actions == ["nominated", "verified"]
            # A refusal arriving late (its row is known now) changes nothing.
            await env.client.get_workflow_handle(enrollment_id).signal(
                EnrollmentWorkflow.refuse_nomination, NominationRefusal("late")
            )
            view = await env.client.get_workflow_handle(enrollment_id).query(
                EnrollmentWorkflow.view
            )
            assert view.state == "verified"
        assert (await env.client.get_workflow_handle(around).describe()).status == (
            WorkflowExecutionStatus.RUNNING
        )


def record_for(program: Program, serial: int) -> NominationRecord:
    key = f"pk-rows-{serial}"
    enrollment_id = enrollment_id_for(key, program.code)
    return NominationRecord(
        input=EnrollmentInput(
            enrollment_id=enrollment_id,
            program=program_terms(program),
            person=PersonData(
                nik=f"16030115058500{serial:02d}",
                full_name=f"Warga {serial}",
                birth_date=dt.date(1985, 5, 15),
                gender="L",
                phone=None,
            ),
            person_key=key,
            village_code=VILLAGE,
            district_code="16.03.01",
            category="perangkat_desa",
            declared_income_idr=1_000_000,
            premium_idr=50_400,
            nominated_by=Actor("op-embawang", "village_operator", VILLAGE),
        ),
        workflow_id=enrollment_id,
        run_id="run-1",
        occurred_at=dt.datetime(2026, 10, 1, 9, tzinfo=dt.UTC),
    )


def test_one_bad_row_does_not_cost_the_list_its_other_rows(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    program = make_program(engine, code="ROWS", start=dt.date(2026, 10, 1))
    records = [record_for(program, serial) for serial in (1, 2, 3, 4, 5)]
    ok, raced, lost, refused, last = (r.input.enrollment_id for r in records)
    real = nominations.write_nomination
    tries: dict[str, int] = {}

    def flaky(session: Session, record: NominationRecord) -> Any:
        key = record.input.enrollment_id
        tries[key] = tries.get(key, 0) + 1
        if (key == raced and tries[key] <= 2) or key == lost:
            # Lost the race for the unique row: ``raced`` in the list's transaction and once on
            # its own, ``lost`` every time.
            raise IntegrityError("INSERT INTO enrollment ...", {}, Exception("UNIQUE constraint"))
        if key == refused:
            raise DataError("INSERT INTO enrollment ...", {}, Exception("value too long"))
        return real(session, record)

    monkeypatch.setattr(nominations, "write_nomination", flaky)
    outcome = nominations.record_nominations(engine, records)

    assert outcome == {
        ok: None,
        raced: None,
        lost: nominations.RowNotWritten(
            FieldError("row", "could not be recorded right now; send the list again")
        ),
        refused: nominations.RowNotWritten(
            FieldError("row", "refused by the database (Exception); correct the row"),
            refusal_kind="InvalidNomination",
        ),
        last: None,
    }
    assert sorted(rows_in(engine)) == sorted([ok, raced, last])
    # The list's transaction stopped at ``raced``; then each row on its own, a lost race twice.
    assert (tries[raced], tries[lost]) == (3, 2)
    # Written again, nothing changes (idempotent).
    monkeypatch.setattr(nominations, "write_nomination", real)
    assert nominations.record_nominations(engine, records[:1]) == {ok: None}
    assert sorted(rows_in(engine)) == sorted([ok, raced, last])


def test_a_value_the_database_refuses_costs_only_its_row(engine: Engine) -> None:
    """A real refusal, not a raised one: PostgreSQL refuses a NUL byte in text (SQLite stores
    it), and the list's transaction goes on from the row's savepoint."""
    program = make_program(engine, code="ROWS", start=dt.date(2026, 10, 1))
    good, bad = record_for(program, 1), record_for(program, 2)
    bad = dataclasses.replace(
        bad,
        input=dataclasses.replace(
            bad.input, person=dataclasses.replace(bad.input.person, full_name="Warga\x00 2")
        ),
    )
    outcome = nominations.record_nominations(engine, [good, bad])
    assert outcome[good.input.enrollment_id] is None
    if engine.dialect.name == "postgresql":
        refusal = outcome[bad.input.enrollment_id]
        assert refusal is not None and refusal.refusal_kind == "InvalidNomination"
        assert refusal.error.message.startswith("refused by the database")
        assert rows_in(engine) == [good.input.enrollment_id]
    else:
        assert outcome[bad.input.enrollment_id] is None
        assert sorted(rows_in(engine)) == sorted(r.input.enrollment_id for r in (good, bad))
