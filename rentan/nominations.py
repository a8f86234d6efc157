"""A village's nomination list: validated row by row, each valid row started as a workflow.

Valid rows are accepted even when others are rejected. Each accepted row is a workflow started
together with its ``nominate`` Update (update-with-start): the answer comes only once the
workflow has recorded the nomination, so it is durable and already readable. The workflow id
derives from a keyed hash of NIK + program, so the same person nominated again for the same
period, by any village, reaches the same workflow and is refused with a pointer to it; the same
list sent twice changes nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field

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

from activities.projection import enrollment_id_for, program_terms
from domain import nik as nik_rules
from domain.errors import FieldError
from domain.nomination import ProgramRules, WorkerRow, validate_row
from domain.premium import period_premium
from domain.regions import regions
from models.tables import Program
from rentan.logs import get_logger
from workflows import search_attributes as sa
from workflows.enrollment import EnrollmentWorkflow
from workflows.messages import Actor, EnrollmentInput, NominationRequest, PersonData, StepResult

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

    async def start(number: int, inp: EnrollmentInput) -> Accepted | Rejected:
        async with limit:
            return await _start_one(client, number, inp, actor=actor, task_queue=task_queue)

    outcomes = await asyncio.gather(*(start(n, inp) for n, inp in starts))
    for outcome in outcomes:
        if isinstance(outcome, Accepted):
            result.accepted.append(outcome)
        else:
            result.rejected.append(outcome)
    result.rejected.sort(key=lambda r: r.row)
    log.info(
        "nomination list processed",
        program=program.code,
        village_code=village_code,
        accepted=len(result.accepted),
        rejected=len(result.rejected),
    )
    return result


async def _start_one(
    client: Client, number: int, inp: EnrollmentInput, *, actor: Actor, task_queue: str
) -> Accepted | Rejected:
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
            NominationRequest(actor=actor, village_code=inp.village_code),
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
        return Rejected(
            number,
            masked,
            [FieldError("row", "could not be recorded right now; send the list again")],
        )
    return Accepted(number, step.enrollment_id, masked, step.state)
