"""Property-based tests of the whole HTTP API from its own OpenAPI schema (schemathesis).

For every operation, schemathesis generates valid and invalid requests; each is sent with a real
key and its answer must not be a 5xx and must match what the schema documents for its status.

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
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from tests.api.conftest import Api
from tests.api.test_auth_and_roles import worker
from tests.harness import VILLAGE

BASE_URL = "http://rentan"
EXAMPLES = 20
# Operations without parameters have nothing to vary; the template takes ~0.1 s to build.
FEWER = {"GET /v1/nominations/template.xlsx": 3, "GET /healthz": 3, "GET /readyz": 3}
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


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
        ).result(timeout=120)
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


def session_for(api: Api) -> requests.Session:
    session = requests.Session()
    adapter = LoopAdapter(api.http, asyncio.get_running_loop())
    session.mount("http://", adapter)
    return session


def run_operation(
    operation: schemathesis.APIOperation,
    session: requests.Session,
    headers: dict[str, str],
    mode: schemathesis.GenerationMode,
) -> None:
    @settings(
        max_examples=FEWER.get(operation.label, EXAMPLES),
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=BASE_URL, session=session, headers=headers, checks=CHECKS)

    check()


def operations(api: Api) -> Iterator[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_dict(api.app.openapi())
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the schema is not valid: {result}"
        yield result.ok()


@pytest.mark.parametrize("who", ["auditor", "village_operator"])
async def test_api_conforms_to_its_schema(api: Api, who: str) -> None:
    # Something to find: a nominated enrollment, so reads are not all empty.
    answer = await api.http.post(
        f"/v1/programs/{api.program.code}/nominations",
        json={"village_code": VILLAGE, "workers": [worker(1), worker(2, category="linmas")]},
        headers=api.auth("village_operator"),
    )
    assert answer.status_code == 200, answer.text
    session = session_for(api)
    headers = api.auth(who)
    failures: list[str] = []
    for operation in operations(api):
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            try:
                await asyncio.to_thread(run_operation, operation, session, headers, mode)
            except Unsatisfiable:
                continue  # nothing to make invalid (no parameters, no body): /healthz
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
