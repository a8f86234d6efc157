"""Nomination lists: JSON, or a CSV/XLSX upload of the village's sheet; and the Excel template."""

from __future__ import annotations

import asyncio
import datetime as dt

from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError

from api.auth import CurrentPrincipal, actor_of, require
from api.deps import StateDep
from api.problems import Conflict, Invalid, Unavailable
from api.routers.programs_router import program_of
from api.schemas import (
    AcceptedRow,
    FieldErrorOut,
    NominationIn,
    NominationOut,
    RejectedRow,
)
from core.temporal import NOT_SENT_ERRORS
from domain.regions import normalize_village_code
from domain.worker_rows import WorkerRow
from services.keys import Principal, Role
from services.nominations import NominationRefused, bpjs_timing, nominate
from services.spreadsheets import MAX_BYTES, UploadError, build_template, parse_nomination_file

router = APIRouter(tags=["nominations"])
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

NOMINATION_BODY = {
    "requestBody": {
        "content": {
            "application/json": {
                "schema": NominationIn.model_json_schema(
                    ref_template="#/components/schemas/{model}"
                )
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "village_code": {"type": "string"},
                        "file": {"type": "string", "format": "binary"},
                    },
                    "required": ["village_code", "file"],
                }
            },
        },
        "required": True,
    }
}


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


@router.post(
    "/v1/programs/{code}/nominations",
    openapi_extra=NOMINATION_BODY,
    responses={
        409: {"description": "the whole list is refused (unknown village, program ended)"},
        503: {"description": "Temporal did not take the list; send it again"},
        413: {"description": "the file is too large"},
        415: {"description": "neither JSON nor a multipart upload"},
        422: {"description": "invalid list"},
    },
)
async def submit_nominations(
    code: str,
    request: Request,
    state: StateDep,
    principal: Principal = require(Role.VILLAGE_OPERATOR),
) -> NominationOut:
    """A village's list: valid rows are accepted (workflows started) even if others fail."""
    program = await asyncio.to_thread(program_of, state.engine, code)
    warnings: list[str] = []
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        village_code, rows, warnings = await _from_upload(request)
    elif content_type.startswith("application/json"):
        raw = await request.body()  # its size held to the limit by the gate (api.gate)
        try:
            body = NominationIn.model_validate_json(raw)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
        village_code = body.village_code
        rows = [
            (
                index,
                WorkerRow(
                    nik=_as_text(w.nik),
                    full_name=w.full_name,
                    birth_date=_as_text(w.birth_date),
                    gender=w.gender,
                    category=w.category,
                    phone=_as_text(w.phone),
                    declared_income_idr=_as_text(w.declared_income_idr),
                ),
            )
            for index, w in enumerate(body.workers, start=1)
        ]
    else:
        raise HTTPException(415, "send application/json or multipart/form-data with a file")
    village_code = normalize_village_code(village_code)
    if village_code != principal.village_code:
        raise HTTPException(403, f"this key nominates for village {principal.village_code} only")
    client = await state.temporal()
    try:
        result = await nominate(
            client,
            program=program,
            village_code=village_code,
            rows=rows,
            actor=actor_of(principal),
            id_secret=state.settings.id_secret_bytes(),
            task_queue=state.settings.task_queue,
            bpjs=bpjs_timing(state.settings),
            today=dt.date.today(),
        )
    except NominationRefused as exc:
        raise Conflict(exc.message, errors=[{"field": exc.field, "message": exc.message}]) from None
    except NOT_SENT_ERRORS:
        # Temporal did not take the list: nothing or some of it was taken; sent again, the
        # rows already taken are answered as accepted once more and nothing is doubled.
        raise Unavailable("the list could not be sent right now; send it again") from None
    return NominationOut(
        accepted=[AcceptedRow(**a.__dict__) for a in result.accepted],
        rejected=[
            RejectedRow(
                row=r.row,
                nik_masked=r.nik_masked,
                errors=[FieldErrorOut(field=e.field, message=e.message) for e in r.errors],
            )
            for r in result.rejected
        ],
        warnings=warnings,
    )


async def _from_upload(request: Request) -> tuple[str, list[tuple[int, WorkerRow]], list[str]]:
    form = await request.form(max_files=1, max_fields=5)
    upload = form.get("file")
    village_code = form.get("village_code")
    if upload is None or isinstance(upload, str):
        raise Invalid(
            "attach the list as the multipart field 'file'",
            errors=[{"field": "file", "message": "missing"}],
        )
    data = await upload.read(MAX_BYTES + 1)
    try:
        # Off the event loop: a workbook takes a while to read, and nothing else may wait.
        parsed = await asyncio.to_thread(
            parse_nomination_file, data, filename=upload.filename, content_type=upload.content_type
        )
    except UploadError as exc:
        raise Invalid(exc.message, errors=[{"field": exc.field, "message": exc.message}]) from None
    if (
        isinstance(village_code, str)
        and parsed.village_code
        and parsed.village_code != village_code
    ):
        message = f"the file is for village {parsed.village_code}, the form says {village_code}"
        raise Invalid(message, errors=[{"field": "village_code", "message": message}])
    chosen = village_code if isinstance(village_code, str) else parsed.village_code
    if not chosen:
        raise Invalid(
            "give the village_code form field",
            errors=[{"field": "village_code", "message": "missing"}],
        )
    return chosen, parsed.rows, parsed.warnings


@router.get(
    "/v1/nominations/template.xlsx",
    response_class=Response,
    responses={200: {"content": {XLSX: {}}, "description": "the Excel template"}},
)
def get_nomination_template(_: CurrentPrincipal) -> Response:
    """The Excel sheet a village fills in: headers, a sample row, the categories."""
    return Response(
        build_template(),
        media_type=XLSX,
        headers={"Content-Disposition": 'attachment; filename="rentan-nominasi.xlsx"'},
    )
