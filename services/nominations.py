"""A village's nomination list: validated row by row here, then taken by a durable batch.

Valid rows are accepted even when others are rejected. The valid ones go to a
``NominationListWorkflow`` (chunks of ``LIST_CHUNK`` rows, one workflow each): its activity
claims each person's place in the period, starts (or reaches) each person's enrollment
workflow with the ``nominate`` Update and writes every row it answers with in one transaction.
This call waits for the batch and answers with its result, so an accepted row is durable (the
workflow) and readable (the projection) once answered. The same list sent again changes
nothing; a person another village nominated first is refused.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from dataclasses import dataclass, field

from temporalio.client import Client

from core.logs import get_logger
from core.settings import Settings
from domain import nik as nik_rules
from domain.errors import FieldError
from domain.nik import enrollment_id_for
from domain.premium import period_premium
from domain.records import Actor
from domain.regions import regions
from domain.worker_rows import ProgramRules, WorkerRow, validate_row
from models.tables import Program
from workflows.batches import NominationListWorkflow
from workflows.messages import (
    BatchResult,
    BpjsTiming,
    EnrollmentInput,
    ListRow,
    NominationList,
    PersonData,
)

log = get_logger("rentan.nominations")
# Rows per batch workflow: its input (each row's enrollment input, encrypted) stays far below
# Temporal's 2 MB payload limit.
LIST_CHUNK = 500


def bpjs_timing(settings: Settings) -> BpjsTiming:
    """What each enrollment nominated now is told of BPJS's deadlines: the adapter gives up on a
    call after ``bpjs_timeout_s``; a worker that died mid-call is noticed at one and a half
    times that (15 s for the default 10)."""
    return BpjsTiming(settings.bpjs_timeout_s * 1.5, settings.bpjs_max_backoff_s)


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
    bpjs: BpjsTiming,
    today: dt.date,
) -> NominationResult:
    """Validate ``rows`` (numbered as the village sees them) and nominate the valid ones."""
    village = regions().villages.get(village_code)
    if village is None:
        raise NominationRefused("village_code", f"unknown village code {village_code!r}")
    if program.period_end < today:
        raise NominationRefused(
            "program", f"program {program.code} ended on {program.period_end}: no nominations"
        )
    rules = ProgramRules(program.period_start, program.period_end, program.max_age)
    terms = program.terms()
    result = NominationResult()
    seen: dict[str, int] = {}
    valid: list[ListRow] = []
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
        inp = EnrollmentInput(
            enrollment_id=enrollment_id_for(person_key, program.code),
            program=terms,
            person=PersonData(
                worker.nik, worker.full_name, worker.birth_date, worker.gender, worker.phone
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
            bpjs=bpjs,
        )
        valid.append(ListRow(number, inp))

    batches = [
        NominationList(
            batch_id=f"nominate-{uuid.uuid4().hex}",
            program_code=program.code,
            village_code=village.code,
            actor=actor,
            task_queue=task_queue,
            rows=valid[start : start + LIST_CHUNK],
        )
        for start in range(0, len(valid), LIST_CHUNK)
    ]
    answers: list[BatchResult] = await asyncio.gather(
        *(
            client.execute_workflow(
                NominationListWorkflow.run, batch, id=batch.batch_id, task_queue=task_queue
            )
            for batch in batches
        )
    )
    for answer in answers:
        for outcome in answer.outcomes:
            if outcome.ok:
                result.accepted.append(
                    Accepted(
                        outcome.row,
                        outcome.enrollment_id,
                        outcome.nik_masked,
                        outcome.state or "nominated",
                    )
                )
            else:
                error = FieldError(outcome.field, outcome.error or "refused")
                result.rejected.append(Rejected(outcome.row, outcome.nik_masked, [error]))
    result.accepted.sort(key=lambda a: a.row)
    result.rejected.sort(key=lambda r: r.row)
    log.info(
        "nomination list processed",
        program=program.code,
        village_code=village.code,
        accepted=len(result.accepted),
        rejected=len(result.rejected),
    )
    return result
