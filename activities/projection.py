"""Local activities that write the projection, the decisions and the audit log, idempotently.

Each write is keyed: the enrollment row only takes a transition whose ``seq`` is newer than the
one it has, and decisions and audit rows carry an ``event_key`` (enrollment id + seq) so a
retried or replayed activity writes nothing twice. Each call's writes land together or not at
all: a savepoint of a transaction the group-commit writer shares among concurrent calls
(models/writer.py), committed before the call returns.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from sqlalchemy import Insert, bindparam, func, insert, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DataError, IntegrityError
from sqlmodel import Session, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import audit, budget
from domain.nik import mask
from domain.premium import period_premium
from domain.states import State
from models.db import insert_new, upsert_into
from models.prepared import Prepared
from models.tables import Decision, Enrollment, Person, Program, table
from models.writer import GroupCommitWriter
from workflows.messages import (
    BudgetRecommit,
    BudgetRelease,
    EnrollmentChanges,
    NominationOutcome,
    NominationRecord,
    ProgramTerms,
    RenewalOpening,
    RenewalTerms,
    Transition,
)

_ENROLLMENTS = table(Enrollment)
_DECISIONS = table(Decision)
_PEOPLE = table(Person)
# Every step of every enrollment runs these: prepared (models/prepared.py), their values given
# at execution (see ``models.db.insert_new``).
_INSERT_ENROLLMENT = Prepared(insert(_ENROLLMENTS))
# The row only takes a newer step; the SET columns are the parameters' other keys.
_ADVANCE_ENROLLMENT = Prepared(
    update(_ENROLLMENTS).where(
        _ENROLLMENTS.c.id == bindparam("step_enrollment_id"),
        _ENROLLMENTS.c.seq < bindparam("step_seq"),
    )
)
_INSERT_DECISION = Prepared(
    lambda dialect: insert_new(_DECISIONS, key="event_key", dialect=dialect)
)


def enrollment_id_for(person_key: str, program_code: str) -> str:
    """Enrollment ids derive from the keyed person hash: stable, and no NIK inside."""
    digest = hashlib.sha256(f"{person_key}:{program_code}".encode()).hexdigest()
    return f"enr_{digest[:24]}"


def program_terms(program: Program) -> ProgramTerms:
    return ProgramTerms(
        code=program.code,
        period_start=program.period_start,
        period_end=program.period_end,
        renewal_lead_days=program.renewal_lead_days,
        successor=program.successor,
        verification_reminder_days=program.verification_reminder_days,
        verification_deadline_days=program.verification_deadline_days,
        verification_expiry_days=program.verification_expiry_days,
    )


class ProjectionActivities:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Every write goes through one group-committing writer (models/writer.py).
        # Each batch takes the audit chain's lock first (PostgreSQL): two workers' batches then
        # never hold a funding source and the chain in opposite orders.
        self.writer = GroupCommitWriter(engine, on_begin=audit.lock_chain)

    @activity.defn(name="record_nomination")
    async def record_nomination(self, record: NominationRecord) -> NominationOutcome:
        """Create the person and the enrollment row, or report who holds this period already."""

        def write(session: Session) -> NominationOutcome:
            return write_nomination(session, record)

        try:
            return await self.writer.run(write)
        except DataError as exc:
            # The database refuses the value itself (validation should have caught it):
            # retrying cannot help, so the nomination is refused instead of hanging.
            raise ApplicationError(
                f"nomination data refused by the database: {type(exc.orig).__name__}",
                type="InvalidNomination",
                non_retryable=True,
            ) from None
        except IntegrityError as exc:
            # Another nomination of the same person may have won the race for the unique row:
            # the retry then reports the holder.
            raise ApplicationError(f"nomination not recorded: {exc.orig}") from None

    # The name predates batches: recorded histories' markers carry it (their input is not kept).
    @activity.defn(name="record_transition")
    async def record_transitions(self, steps: list[Transition]) -> None:
        """Apply transitions in order to the projection, each with its decision and audit entry."""
        await self.record(steps)

    async def record(self, steps: list[Transition]) -> None:
        """``record_transitions`` for callers that are not local activities (the registration)."""

        def write(session: Session) -> None:
            for step in steps:
                apply_transition(session, step)

        await self.writer.run(write)

    @activity.defn(name="release_budget")
    async def release_budget(self, step: BudgetRelease) -> int:
        def write(session: Session) -> int:
            return budget.release(
                session,
                enrollment_id=step.enrollment_id,
                program_code=step.program_code,
                actor=step.actor.name,
            )

        return await self.writer.run(write)

    @activity.defn(name="recommit_budget")
    async def recommit_budget(self, step: BudgetRecommit) -> None:
        def write(session: Session) -> None:
            row = session.get(Enrollment, step.enrollment_id)
            row_category = row.category if row else ""
            budget.commit(
                session,
                program_code=step.program_code,
                source_code=step.funding_source,
                claims=[budget.Claim(step.enrollment_id, row_category, step.amount_idr)],
                actor=step.actor.name,
            )

        try:
            await self.writer.run(write)
        except budget.BudgetError as exc:
            raise ApplicationError(str(exc), type="StepRefused", non_retryable=True) from None

    @activity.defn(name="open_renewal")
    async def open_renewal(self, opening: RenewalOpening) -> RenewalTerms:
        """Reserve the successor period for this person, so nobody nominates them there twice."""
        current = opening.current

        def write(session: Session) -> RenewalTerms:
            successor_code = current.program.successor
            successor = session.get(Program, successor_code) if successor_code else None
            if successor is None:
                return RenewalTerms(
                    enrollment_id=None, program=None, refusal="the program has no successor"
                )
            next_id = enrollment_id_for(current.person_key, successor.code)
            holder = _holder(session, successor.code, current.person_key)
            if holder is not None and holder.workflow_id != opening.workflow_id:
                return RenewalTerms(
                    enrollment_id=None,
                    program=None,
                    refusal=f"already nominated for {successor.code} as enrollment {holder.id}",
                )
            premium = period_premium(
                current.declared_income_idr, successor.period_start, successor.period_end
            )
            if holder is None:
                session.add(
                    Enrollment(
                        id=next_id,
                        program_code=successor.code,
                        person_key=current.person_key,
                        village_code=current.village_code,
                        district_code=current.district_code,
                        category=current.category,
                        full_name=current.person.full_name,
                        nik_masked=mask(current.person.nik),
                        state=State.RENEWAL_PENDING.value,
                        declared_income_idr=current.declared_income_idr,
                        premium_idr=premium,
                        workflow_id=opening.workflow_id,
                        seq=0,
                        nominated_by=current.nominated_by.name,
                        nominated_at=opening.occurred_at,
                        updated_at=opening.occurred_at,
                    )
                )
            return RenewalTerms(
                enrollment_id=next_id, program=program_terms(successor), premium_idr=premium
            )

        return await self.writer.run(write)

    @activity.defn(name="cancel_renewal")
    async def cancel_renewal(self, step: BudgetRelease) -> None:
        """Drop the successor reservation (it never became an enrollment) and its budget."""

        def write(session: Session) -> None:
            budget.release(
                session,
                enrollment_id=step.enrollment_id,
                program_code=step.program_code,
                actor=step.actor.name,
            )
            row = session.get(Enrollment, step.enrollment_id)
            if row is not None and row.seq == 0:
                session.delete(row)

        await self.writer.run(write)


def write_nomination(session: Session, record: NominationRecord) -> NominationOutcome:
    """Create the person and the enrollment row, or report who holds this period already.
    The nomination's local activity, and the API's for the rows a list's call writes itself
    (``rentan.nominations``)."""
    inp = record.input
    existing = _holder(session, inp.program.code, inp.person_key)
    if existing is not None:
        if existing.workflow_id == record.workflow_id:
            return NominationOutcome(recorded=True)  # a retry of this very call
        return NominationOutcome(
            recorded=False,
            existing_enrollment_id=existing.id,
            existing_village_code=existing.village_code,
            existing_state=existing.state,
        )
    sql = session.connection()
    _upsert_person(sql, record)
    _INSERT_ENROLLMENT.run(
        sql,
        dict(
            id=inp.enrollment_id,
            program_code=inp.program.code,
            person_key=inp.person_key,
            village_code=inp.village_code,
            district_code=inp.district_code,
            category=inp.category,
            full_name=inp.person.full_name,
            nik_masked=mask(inp.person.nik),
            state=record.state,
            declared_income_idr=inp.declared_income_idr,
            premium_idr=inp.premium_idr,
            workflow_id=record.workflow_id,
            seq=1,
            nominated_by=inp.nominated_by.name,
            nominated_at=record.occurred_at,
            updated_at=record.occurred_at,
        ),
    )
    audit.append(
        session,
        audit.AuditEntry(
            event_key=f"{inp.enrollment_id}#1",
            occurred_at=record.occurred_at,
            actor=inp.nominated_by.name,
            role=inp.nominated_by.role,
            action="nominated",
            enrollment_id=inp.enrollment_id,
            workflow_id=record.workflow_id,
            run_id=record.run_id,
            state_before=None,
            state_after=record.state,
            detail={"village_code": inp.village_code, "category": inp.category},
        ),
    )
    return NominationOutcome(recorded=True)


def apply_transition(session: Session, step: Transition) -> None:
    """One step into the projection: the row, the decision (a human's) and the audit entry;
    nothing that is there already. Also the API's, for the steps its callers write
    (``rentan.steps.verify_many``)."""
    # Statements, not ORM objects: these run for every step of every enrollment (BENCHMARKS.md).
    sql = session.connection()
    applied = _ADVANCE_ENROLLMENT.run(
        sql,
        {
            "step_enrollment_id": step.enrollment_id,
            "step_seq": step.seq,
            "seq": step.seq,
            "state": step.state_after,
            "updated_at": step.occurred_at,
            **_changed_columns(step.changes),
        },
    )
    if applied == 0:  # already applied (a retry), or the row is not there at all
        if (
            sql.execute(
                select(_ENROLLMENTS.c.id).where(_ENROLLMENTS.c.id == step.enrollment_id)
            ).first()
            is None
        ):
            raise ApplicationError(f"enrollment {step.enrollment_id} is not projected yet")
    else:
        _apply_person_changes(sql, step)
    event_key = f"{step.enrollment_id}#{step.seq}"
    if step.human:
        decision = {
            "event_key": event_key,
            "enrollment_id": step.enrollment_id,
            "action": step.action,
            "actor": step.actor.name,
            "role": step.actor.role,
            "reason": step.reason[:1000],
            "state_before": step.state_before,
            "state_after": step.state_after,
            "decided_at": step.occurred_at,
        }
        _INSERT_DECISION.run(sql, decision)
    audit.append(
        session,
        audit.AuditEntry(
            event_key=event_key,
            occurred_at=step.occurred_at,
            actor=step.actor.name,
            role=step.actor.role,
            action=step.action,
            enrollment_id=step.enrollment_id,
            workflow_id=step.workflow_id,
            run_id=step.run_id,
            state_before=step.state_before,
            state_after=step.state_after,
            reason=step.reason,
            detail=step.detail,
        ),
    )


class _Holder(NamedTuple):
    id: str
    workflow_id: str
    village_code: str
    state: str


_HOLDER = Prepared(
    select(
        _ENROLLMENTS.c.id,
        _ENROLLMENTS.c.workflow_id,
        _ENROLLMENTS.c.village_code,
        _ENROLLMENTS.c.state,
    ).where(
        _ENROLLMENTS.c.program_code == bindparam("program_code"),
        _ENROLLMENTS.c.person_key == bindparam("person_key"),
    )
)


def _holder(session: Session, program_code: str, person_key: str) -> _Holder | None:
    """Who holds this person's enrollment in the program, if anyone: a plain row, as the ORM
    object cost a load per nomination."""
    row = _HOLDER.first(
        session.connection(), {"program_code": program_code, "person_key": person_key}
    )
    return None if row is None else _Holder(*row)


def _upsert_person(sql: Connection, record: NominationRecord) -> None:
    """The person as this nomination gives them; a phone left blank keeps the one on file."""
    inp = record.input
    _UPSERT_PERSON.run(
        sql,
        {
            "person_key": inp.person_key,
            "nik_masked": mask(inp.person.nik),
            "full_name": inp.person.full_name,
            "birth_date": inp.person.birth_date,
            "gender": inp.person.gender,
            "phone": inp.person.phone,
        },
    )


def _person_upsert(dialect: str) -> Insert:
    insert = upsert_into(_PEOPLE, dialect)
    return insert.on_conflict_do_update(
        index_elements=["person_key"],
        set_={
            "full_name": insert.excluded.full_name,
            "phone": func.coalesce(func.nullif(insert.excluded.phone, ""), _PEOPLE.c.phone),
        },
    )


_UPSERT_PERSON = Prepared(_person_upsert)


def _changed_columns(changes: EnrollmentChanges | None) -> dict[str, object]:
    if changes is None:
        return {}
    names = ("kpj_number", "coverage_start", "coverage_end", "funding_source", "full_name")
    return {name: getattr(changes, name) for name in names if getattr(changes, name) is not None}


def _apply_person_changes(sql: Connection, step: Transition) -> None:
    """Corrections a resubmission carries reach the person too."""
    changes = step.changes
    if changes is None:
        return
    corrected = {
        name: getattr(changes, name)
        for name in ("full_name", "birth_date", "gender")
        if getattr(changes, name)
    }
    if corrected:
        person_key = (
            select(_ENROLLMENTS.c.person_key)
            .where(_ENROLLMENTS.c.id == step.enrollment_id)
            .scalar_subquery()
        )
        sql.execute(update(_PEOPLE).where(_PEOPLE.c.person_key == person_key).values(corrected))
