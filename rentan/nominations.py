"""A village's nomination list: validated row by row, each valid row started as a workflow.

Valid rows are accepted even when others are rejected. Each accepted row is a workflow started
together with its ``nominate`` Update (update-with-start), which hands the enrollment row back;
the call writes the list's rows in one transaction before it answers, so an accepted row is
durable (the workflow) and already readable (the projection). The workflow id
derives from a keyed hash of NIK + program, so the same person nominated again for the same
period, by any village, reaches the same workflow and is refused with a pointer to it; the same
list sent twice changes nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError

from activities import audit
from activities.projection import enrollment_id_for, program_terms, write_nomination
from domain import nik as nik_rules
from domain.errors import FieldError
from domain.nomination import ProgramRules, WorkerRow, validate_row
from domain.premium import period_premium
from domain.regions import regions
from models.db import session_scope
from models.tables import Program
from rentan.logs import get_logger
from workflows import search_attributes as sa
from workflows.enrollment import EnrollmentWorkflow
from workflows.messages import (
    Actor,
    EnrollmentInput,
    NominationOutcome,
    NominationRecord,
    NominationRefusal,
    NominationRequest,
    PersonData,
    StepResult,
)

log = get_logger("rentan.nominations")

# Workflows started at once for one list: enough to answer 1,000 rows in seconds without
# flooding the Temporal frontend.
START_CONCURRENCY = 64


class NominationRefused(Exception):
    """The whole list is refused (unknown village, program closed); the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Accepted:
    row: int
    enrollment_id: str
    nik_masked: str
    state: str


@dataclass(frozen=True)
class Rejected:
    row: int
    nik_masked: str
    errors: list[FieldError]


@dataclass
class NominationResult:
    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


async def nominate(
    client: Client,
    engine: Engine,
    *,
    program: Program,
    village_code: str,
    rows: list[tuple[int, WorkerRow]],
    actor: Actor,
    id_secret: bytes,
    task_queue: str,
    today: dt.date,
) -> NominationResult:
    """Validate ``rows`` (numbered as the village sees them) and start a workflow per valid row."""
    village = regions().villages.get(village_code)
    if village is None:
        raise NominationRefused("village_code", f"unknown village code {village_code!r}")
    if program.period_end < today:
        raise NominationRefused(
            "program", f"program {program.code} ended on {program.period_end}: no nominations"
        )
    rules = ProgramRules(program.period_start, program.period_end, program.max_age)
    terms = program_terms(program)
    result = NominationResult()
    seen: dict[str, int] = {}
    starts: list[tuple[int, EnrollmentInput]] = []
    for number, raw in rows:
        worker, errors = validate_row(raw, village=village, rules=rules)
        masked = nik_rules.mask(nik_rules.normalize(raw.nik or ""))
        if worker is not None and worker.nik in seen:
            errors = [FieldError("nik", f"same NIK as row {seen[worker.nik]} of this list")]
            worker = None
        if worker is None:
            result.rejected.append(Rejected(number, masked, errors))
            continue
        seen[worker.nik] = number
        person_key = nik_rules.person_key(worker.nik, secret=id_secret)
        starts.append(
            (
                number,
                EnrollmentInput(
                    enrollment_id=enrollment_id_for(person_key, program.code),
                    program=terms,
                    person=PersonData(
                        nik=worker.nik,
                        full_name=worker.full_name,
                        birth_date=worker.birth_date,
                        gender=worker.gender,
                        phone=worker.phone,
                    ),
                    person_key=person_key,
                    village_code=village.code,
                    district_code=village.district_code,
                    category=worker.category.value,
                    declared_income_idr=worker.declared_income_idr,
                    premium_idr=period_premium(
                        worker.declared_income_idr, program.period_start, program.period_end
                    ),
                    nominated_by=actor,
                    lean_steps=True,
                    budget_recorded_by_registration=True,
                ),
            )
        )

    limit = asyncio.Semaphore(START_CONCURRENCY)

    async def start(number: int, inp: EnrollmentInput) -> _Started | Rejected:
        async with limit:
            return await _start_one(client, number, inp, actor=actor, task_queue=task_queue)

    outcomes = await asyncio.gather(*(start(n, inp) for n, inp in starts))
    started = [o for o in outcomes if isinstance(o, _Started)]
    result.rejected += [o for o in outcomes if isinstance(o, Rejected)]
    # In the order the workflows took them: the audit log then reads in time order.
    records = sorted(
        (o.step.nomination for o in started if o.step.nomination is not None),
        key=lambda r: r.occurred_at,
    )
    try:
        written = await asyncio.to_thread(record_nominations, engine, records)
    except SQLAlchemyError as exc:
        # The database is down or locked out: the workflows keep the nominations, and the same
        # list sent again writes their rows.
        log.warning("nomination rows not written", rows=len(records), error=str(exc)[:200])
        written = None
    for outcome in started:
        record = outcome.step.nomination
        masked = nik_rules.mask(outcome.inp.person.nik)
        if record is None:  # nothing left to write: the row is there already
            result.accepted.append(
                Accepted(outcome.row, outcome.step.enrollment_id, masked, outcome.step.state)
            )
        elif written is None:
            result.rejected.append(Rejected(outcome.row, masked, [_NOT_RECORDED]))
        elif (refusal := written[record.input.enrollment_id]) is not None:
            result.rejected.append(Rejected(outcome.row, masked, [FieldError("nik", refusal)]))
            await _refuse(client, record, refusal)
        else:
            result.accepted.append(
                Accepted(outcome.row, outcome.step.enrollment_id, masked, outcome.step.state)
            )
    result.accepted.sort(key=lambda a: a.row)
    result.rejected.sort(key=lambda r: r.row)
    log.info(
        "nomination list processed",
        program=program.code,
        village_code=village_code,
        accepted=len(result.accepted),
        rejected=len(result.rejected),
    )
    return result


# A row whose answer cannot be given now: its workflow keeps the nomination, and the same list
# sent again writes it (the repeat's answer hands the row back).
_NOT_RECORDED = FieldError("row", "could not be recorded right now; send the list again")


@dataclass(frozen=True)
class _Started:
    """A row whose workflow took the nomination: its answer holds the row to write."""

    row: int
    inp: EnrollmentInput
    step: StepResult


def record_nominations(engine: Engine, records: list[NominationRecord]) -> dict[str, str | None]:
    """Write the rows the workflows handed back, in one transaction: per enrollment id, None
    if recorded (or already there), or why not (someone else holds the person's period, or the
    database refuses the row). Idempotent, as every projection write."""
    if not records:
        return {}
    try:
        return _write_rows(engine, records, isolated=False)
    except (IntegrityError, DataError):
        # One row spoiled the transaction (a renewal reserving the same person meanwhile, a
        # value the database refuses): again, each row on its own savepoint.
        return _write_rows(engine, records, isolated=True)


def _write_rows(
    engine: Engine, records: list[NominationRecord], *, isolated: bool
) -> dict[str, str | None]:
    refusals: dict[str, str | None] = {}
    with session_scope(engine) as session:
        # The audit chain's lock first, as the worker's writer takes it (PostgreSQL deadlocks).
        audit.lock_chain(session)
        for record in records:
            inp = record.input
            if not isolated:
                refusals[inp.enrollment_id] = _refusal(write_nomination(session, record), inp)
                continue
            try:
                with session.begin_nested():
                    outcome = write_nomination(session, record)
            except IntegrityError:
                # Lost the race for the person's period: the holder is there now.
                with session.begin_nested():
                    outcome = write_nomination(session, record)
            except DataError as exc:
                refusals[inp.enrollment_id] = f"refused by the database: {type(exc.orig).__name__}"
                continue
            refusals[inp.enrollment_id] = _refusal(outcome, inp)
    return refusals


def _refusal(outcome: NominationOutcome, inp: EnrollmentInput) -> str | None:
    return None if outcome.recorded else outcome.refusal(inp.program.code)


async def _refuse(client: Client, record: NominationRecord, reason: str) -> None:
    """Tell the workflow its row cannot be written: its run fails, as a refused nomination's
    does. Should the signal not get through, the workflow writes the row itself at its first
    reminder, finds the same holder and fails then."""
    try:
        await client.get_workflow_handle(record.workflow_id).signal(
            EnrollmentWorkflow.refuse_nomination, NominationRefusal(reason)
        )
    except RPCError as err:
        log.warning("refusal not sent", workflow_id=record.workflow_id, error=str(err)[:200])


async def _start_one(
    client: Client, number: int, inp: EnrollmentInput, *, actor: Actor, task_queue: str
) -> _Started | Rejected:
    masked = nik_rules.mask(inp.person.nik)
    operation = WithStartWorkflowOperation(
        EnrollmentWorkflow.run,
        inp,
        id=inp.enrollment_id,
        task_queue=task_queue,
        # A running workflow with this id is this person's enrollment in this period: the
        # nominate Update goes to it and says whether it is the same village's list again.
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        # A closed enrollment (withdrawn, rejected...) keeps its id; a refused duplicate attempt
        # fails its run, so it does not block a later, legitimate nomination.
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(sa.PROGRAM, inp.program.code),
                SearchAttributePair(sa.VILLAGE, inp.village_code),
                SearchAttributePair(sa.DISTRICT, inp.district_code),
                SearchAttributePair(sa.CATEGORY, inp.category),
            ]
        ),
    )
    try:
        step: StepResult = await client.execute_update_with_start_workflow(
            EnrollmentWorkflow.nominate,
            NominationRequest(actor=actor, village_code=inp.village_code, recorded_by_caller=True),
            start_workflow_operation=operation,
        )
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause)
        return Rejected(number, masked, [FieldError("nik", message)])
    except WorkflowAlreadyStartedError:
        return Rejected(
            number,
            masked,
            [
                FieldError(
                    "nik",
                    f"this person's enrollment {inp.enrollment_id} for {inp.program.code} is "
                    "closed (withdrawn, rejected or expired); it cannot be nominated again "
                    "for the same period",
                )
            ],
        )
    except RPCError as err:
        log.warning("nomination not started", row=number, error=str(err)[:200])
        return Rejected(number, masked, [_NOT_RECORDED])
    return _Started(number, inp, step)
