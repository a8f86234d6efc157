"""Every error as ``application/problem+json`` (RFC 9457); never a stack trace.

Exception tree of the API layer::

    ProblemError            an error with an HTTP status and a human detail
    ├── NotFound            404
    ├── Invalid             422 (field errors in ``errors``)
    ├── Conflict            409 (a refused step; the workflow's reason as detail)
    └── Unavailable         503 (the database or Temporal is not reachable)
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.logs import get_logger

PROBLEM_JSON = "application/problem+json"
log = get_logger("rentan.api")


class ProblemError(Exception):
    status = 400
    title = "Bad request"

    def __init__(
        self, detail: str, *, errors: list[dict[str, str]] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.extra = extra


class NotFound(ProblemError):
    status = 404
    title = "Not found"


class Invalid(ProblemError):
    status = 422
    title = "Invalid request"


class Conflict(ProblemError):
    status = 409
    title = "Conflict"


class Unavailable(ProblemError):
    status = 503
    title = "Service unavailable"
    retry_after_s = 1  # a client's (or a proxy's) cue to send the same request again


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://rentan.example/problems/{status}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    # ("body", "workers", 3, "nik") -> "workers[3].nik": the row and the field a person can find.
    parts: list[str] = []
    for item in loc:
        if item in ("body", "query", "path", "header"):
            continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError) -> JSONResponse:
        response = problem(exc.status, exc.title, exc.detail, errors=exc.errors, **exc.extra)
        if isinstance(exc, Unavailable):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field_path(e.get("loc", ())), "message": str(e.get("msg", "invalid"))}
            for e in exc.errors()
        ]
        return problem(422, "Invalid request", "the request has invalid fields", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        response = problem(exc.status_code, _title(exc.status_code), detail)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", error_type=type(exc).__name__)
        return problem(500, "Internal server error", "an unexpected error occurred; it is logged")


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An error (RFC 9457); `errors` names each invalid field.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "additionalProperties": True,  # what a refusal adds: shortfall_idr, enrollment_id, checks...
}
_PROBLEM_CONTENT = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def document_problems(app: FastAPI) -> None:
    """Make the OpenAPI schema say what the handlers above answer: every error is a Problem in
    ``application/problem+json`` (FastAPI's default documents a 422 ``HTTPValidationError`` in
    ``application/json``), and authenticated operations can answer 401 and 403, and those with
    a path parameter 404."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas["Problem"] = PROBLEM_SCHEMA
        for path, item in schema.get("paths", {}).items():
            for operation in item.values():
                responses = operation.setdefault("responses", {})
                if operation.get("security"):
                    responses.setdefault("401", {"description": "no key, or an unknown one"})
                    responses.setdefault("403", {"description": "this key's role may not"})
                if "{" in path:
                    responses.setdefault("404", {"description": "not found"})
                for status, response in responses.items():
                    if status[0] in "45":
                        response["content"] = dict(_PROBLEM_CONTENT)
                        if status == "422":
                            response["description"] = "invalid fields, each named in errors"
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
