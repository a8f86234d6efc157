"""Property-based tests of the whole HTTP API from its own OpenAPI schema (schemathesis).

For every operation, schemathesis generates valid and invalid requests; each is sent with a real
key of each role and its answer must not be a 5xx and must match what the schema documents for
its status. The runs are seeded (``derandomize``) and bounded (``examples_for``): the roles a
route admits share ``HANDLER_EXAMPLES`` requests per operation and mode, a role it refuses (403
whatever the input) gets ``FEW_EXAMPLES``. The database is not the subject (SQLite, the
session's rig).

The schema is read from ``app.openapi()`` rather than with ``schemathesis.openapi.from_asgi``:
``from_asgi`` runs the app (and its lifespan) on an event loop of its own in another thread,
which would replace the ``api`` fixture's state and its Temporal client. Instead, Hypothesis runs
in a worker thread and every request is handed to the fixture's ASGI client on the test's loop
(``LoopAdapter``), where the app, the worker and the time-skipping server live.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import requests.adapters
import schemathesis
import urllib3
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from pydantic import BaseModel
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from tests.api.conftest import Api
from tests.api.test_auth_and_roles import ALL_ROLES, ENDPOINTS, worker
from tests.harness import VILLAGE

BASE_URL = "http://rentan"
# Requests per operation and mode that reach its handler, shared among the roles it admits
# (each gets at least MIN_EXAMPLES). A refused role's answer is a 403 whatever the input, and an
# operation without parameters or a body (the key is the caller's) has nothing to vary: those
# get FEW_EXAMPLES.
HANDLER_EXAMPLES = 10
MIN_EXAMPLES = 4
FEW_EXAMPLES = 2
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
# Who may call each route (the table test_auth_and_roles keeps complete); the rest are open.
ALLOWED = {(e.method, e.path.split("?")[0]): e.allowed for e in ENDPOINTS}
# (operation, mode) with nothing to make invalid (no parameter but the key, or a path parameter
# any string fits): Hypothesis takes ~0.8 s to find that out, once per session is enough.
UNSATISFIABLE: set[tuple[str, str]] = set()


class LoopAdapter(requests.adapters.HTTPAdapter):
    """A ``requests`` transport that runs each request on the test's event loop."""

    def __init__(self, http: httpx.AsyncClient, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.http = http
        self.loop = loop

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        body = request.body
        content = (
            body.encode() if isinstance(body, str) else body if isinstance(body, bytes) else b""
        )
        headers = {k: v if isinstance(v, str) else v.decode() for k, v in request.headers.items()}
        answer = asyncio.run_coroutine_threadsafe(
            self.http.request(
                str(request.method), str(request.url), headers=headers, content=content
            ),
            self.loop,
        ).result(timeout=60)
        raw_headers = urllib3.HTTPHeaderDict()
        for name, value in answer.headers.multi_items():
            raw_headers.add(name, value)
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(answer.content),
            headers=raw_headers,
            status=answer.status_code,
            reason=answer.reason_phrase,
            version=11,
            preload_content=False,
        )
        response = self.build_response(request, raw)
        return response


def session_for(http: httpx.AsyncClient) -> requests.Session:
    session = requests.Session()
    session.mount("http://", LoopAdapter(http, asyncio.get_running_loop()))
    return session


def run_operation(
    operation: schemathesis.APIOperation,
    session: requests.Session,
    headers: dict[str, str],
    mode: schemathesis.GenerationMode,
    examples: int,
) -> None:
    """Send ``examples`` generated requests; raises on the first failed check (shrunk)."""

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=BASE_URL, session=session, headers=headers, checks=CHECKS)

    check()


def operations(app: FastAPI) -> Iterator[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_dict(app.openapi())
    # Every request carries the role's key: a generated (or, in negative mode, missing)
    # Authorization header would make most requests a 401 (test_auth_and_roles covers those).
    schema.config.generation.update(with_security_parameters=False)
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the schema is not valid: {result}"
        yield result.ok()


def examples_for(operation: schemathesis.APIOperation, who: str) -> int:
    if not (operation.path_parameters or operation.query or operation.body):
        return FEW_EXAMPLES
    path = operation.path.replace("{enrollment_id}", "{id}").replace("{conflict_id}", "{id}")
    allowed = ALLOWED.get((operation.method.upper(), path), ALL_ROLES)
    if who not in allowed:
        return FEW_EXAMPLES
    return max(MIN_EXAMPLES, -(-HANDLER_EXAMPLES // len(allowed)))


async def failures_of(
    app: FastAPI, http: httpx.AsyncClient, headers: dict[str, str], who: str = ""
) -> list[str]:
    """Every operation of ``app``'s schema, in both modes: what failed, one line each."""
    session = session_for(http)
    failures: list[str] = []
    for operation in operations(app):
        examples = examples_for(operation, who)
        for mode in MODES:
            if (operation.label, mode.value) in UNSATISFIABLE:
                continue
            try:
                await asyncio.to_thread(run_operation, operation, session, headers, mode, examples)
            except Unsatisfiable:
                UNSATISFIABLE.add((operation.label, mode.value))
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    return failures


@pytest.mark.parametrize("who", ALL_ROLES)
async def test_every_operation_conforms_to_the_schema_for_each_role(api: Api, who: str) -> None:
    # Something to find: nominated enrollments, so reads are not all empty.
    answer = await api.http.post(
        f"/v1/programs/{api.program.code}/nominations",
        json={"village_code": VILLAGE, "workers": [worker(1), worker(2, category="linmas")]},
        headers=api.auth("village_operator"),
    )
    assert answer.status_code == 200, answer.text
    failures = await failures_of(api.app, api.http, api.auth(who), who)
    assert not failures, "\n\n".join(failures)


# Stateful: sequences of calls, each taking ids from earlier answers (links schemathesis infers
# from the schema: a list's ids into a step, a step's answer into a read), per role.
STATEFUL_SCENARIOS = 6
STATEFUL_STEPS = 8


def run_stateful(app: FastAPI, session: requests.Session, headers: dict[str, str]) -> int:
    """Run seeded call sequences; raises on the first failed check. Returns the calls made."""
    schema = schemathesis.openapi.from_dict(app.openapi())
    schema.config.generation.update(with_security_parameters=False)
    calls = 0

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"base_url": BASE_URL, "session": session, "headers": headers}

        def validate_response(
            self, response: Any, case: schemathesis.Case, *args: Any, **kwargs: Any
        ) -> None:
            nonlocal calls
            calls += 1
            case.validate_response(response, checks=CHECKS, headers=headers)

    Machine.run(
        settings=settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )
    return calls


@pytest.mark.parametrize("who", ALL_ROLES)
async def test_call_sequences_conform_to_the_schema_for_each_role(api: Api, who: str) -> None:
    """Calls chained on real ids (an enrollment listed, then stepped on, then read) as one
    role: no 5xx, and every answer as the schema documents it."""
    answer = await api.http.post(
        f"/v1/programs/{api.program.code}/nominations",
        json={"village_code": VILLAGE, "workers": [worker(3), worker(4, category="linmas")]},
        headers=api.auth("village_operator"),
    )
    assert answer.status_code == 200, answer.text
    calls = await asyncio.to_thread(run_stateful, api.app, session_for(api.http), api.auth(who))
    assert calls >= STATEFUL_SCENARIOS * 2  # sequences ran, not a vacuous pass


class Thing(BaseModel):
    name: str


def _broken_app() -> FastAPI:
    app = FastAPI()

    @app.get("/boom")
    async def get_boom() -> Thing:
        raise RuntimeError("a bug")

    @app.get("/liar", responses={200: {"model": Thing}})
    async def get_liar() -> JSONResponse:
        return JSONResponse({"name": 42})  # not what the schema documents

    return app


async def test_schema_checks_fail_on_a_5xx_or_a_schema_violation() -> None:
    """The machinery above reports what it must (it would pass vacuously otherwise)."""
    app = _broken_app()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        failures = await failures_of(app, http, {})
    assert len(failures) == 2, failures  # each once: no parameters, so no negative mode
    boom, liar = sorted(failures)
    assert boom.startswith("GET /boom (positive)") and "500" in boom, boom
    assert liar.startswith("GET /liar (positive)") and "schema" in liar.lower(), liar
