"""Liveness, readiness against the real dependencies, problem+json errors, request ids."""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.problems import PROBLEM_JSON, Conflict, install_error_handlers
from api.state import AppState
from core.settings import Settings

UNREACHABLE_POSTGRES = "postgresql://postgres@127.0.0.1:1/x"
PAYLOAD_KEY = base64.b64encode(b"r" * 32).decode()  # readiness decrypts nothing


def _temporal_address(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@asynccontextmanager
async def _client(app: FastAPI, *, lifespan: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the app in process; the lifespan runs as uvicorn would run it."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://rentan.test") as client:
        if lifespan:
            async with app.router.lifespan_context(app):
                yield client
        else:
            yield client


def _assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert body["type"] == f"https://rentan.example/problems/{status}"
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body


async def test_get_healthz_ok(settings: Settings) -> None:
    async with _client(create_app(settings)) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_get_healthz_without_dependencies(tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("nodeps"),
        database_url=UNREACHABLE_POSTGRES,
        temporal_address=f"127.0.0.1:{_closed_port()}",
    )
    async with _client(create_app(settings)) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200  # liveness does not depend on the database or Temporal


async def test_get_readyz_ready(settings: Settings, dev_server_env: WorkflowEnvironment) -> None:
    settings = settings.model_copy(update={"temporal_address": _temporal_address(dev_server_env)})
    async with _client(create_app(settings)) as client:
        response = await client.get("/readyz")
        again = await client.get("/readyz")  # the lazily connected client is reused
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "temporal": "ok"}}
    assert again.status_code == 200


async def test_get_readyz_temporal_down(settings: Settings) -> None:
    settings = settings.model_copy(update={"temporal_address": f"127.0.0.1:{_closed_port()}"})
    async with _client(create_app(settings)) as client:
        response = await client.get("/readyz")
    body = _assert_problem(response, 503)
    assert "temporal" in str(body["detail"])
    assert "database" not in str(body["detail"])
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert checks == {"database": "ok", "temporal": "unavailable"}  # nothing more: no host
    assert "127.0.0.1" not in response.text


async def test_get_readyz_database_down(
    tmp_path_factory: pytest.TempPathFactory, dev_server_env: WorkflowEnvironment
) -> None:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("dbdown"),
        database_url=UNREACHABLE_POSTGRES,
        temporal_address=_temporal_address(dev_server_env),
        payload_key=PAYLOAD_KEY,
    )
    async with _client(create_app(settings)) as client:
        response = await client.get("/readyz")
    body = _assert_problem(response, 503)
    assert "database" in str(body["detail"])
    assert "temporal" not in str(body["detail"])
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert checks == {"database": "unavailable", "temporal": "ok"}
    # The error's text (host, port, user) is logged, never answered to whoever asked.
    for leak in ("127.0.0.1", "postgres", "5432", "connection"):
        assert leak not in response.text.lower().replace("database unavailable", ""), leak


async def test_get_readyz_state_set_by_hand(
    settings: Settings, dev_server_env: WorkflowEnvironment
) -> None:
    settings = settings.model_copy(update={"temporal_address": _temporal_address(dev_server_env)})
    app = create_app(settings)
    app.state.rentan = AppState.create(settings)
    try:
        async with _client(app, lifespan=False) as client:
            response = await client.get("/readyz")
    finally:
        await app.state.rentan.close()
    assert response.status_code == 200, response.text


async def test_get_unknown_path_is_401_to_a_stranger(settings: Settings) -> None:
    """Without a key nobody learns which paths exist (the gate answers before routing)."""
    async with _client(create_app(settings)) as client:
        response = await client.get("/no/such/path")
    _assert_problem(response, 401)


async def test_post_wrong_method_405(settings: Settings) -> None:
    async with _client(create_app(settings)) as client:
        response = await client.post("/healthz")
    _assert_problem(response, 405)
    assert "GET" in response.headers["allow"]


class Worker(BaseModel):
    nik: str = Field(pattern=r"^\d{16}$")
    age: int = Field(ge=18)


class Cohort(BaseModel):
    name: str
    workers: list[Worker]


def _tiny_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/cohorts")
    async def post_cohort(cohort: Cohort) -> dict[str, int]:
        return {"workers": len(cohort.workers)}

    @app.get("/boom")
    async def get_boom() -> None:
        raise RuntimeError("secret internals: /srv/rentan/db.py line 42")

    @app.get("/conflict")
    async def get_conflict() -> None:
        raise Conflict("the enrollment is already approved", current_state="approved")

    return app


async def test_post_invalid_body_422() -> None:
    async with _client(_tiny_app(), lifespan=False) as client:
        ok = await client.post(
            "/cohorts", json={"name": "a", "workers": [{"nik": "1603011505850001", "age": 40}]}
        )
        response = await client.post(
            "/cohorts",
            json={
                "name": "a",
                "workers": [{"nik": "1603011505850001", "age": 40}, {"nik": "123", "age": 12}],
            },
        )
        missing = await client.post("/cohorts", json={"workers": []})
    assert ok.status_code == 200
    body = _assert_problem(response, 422)
    errors = body["errors"]
    assert isinstance(errors, list)
    assert {e["field"] for e in errors} == {"workers[1].nik", "workers[1].age"}
    assert all(set(e) == {"field", "message"} and e["message"] for e in errors)
    missing_body = _assert_problem(missing, 422)
    assert missing_body["errors"] == [{"field": "name", "message": "Field required"}]


async def test_post_not_json_422() -> None:
    async with _client(_tiny_app(), lifespan=False) as client:
        response = await client.post(
            "/cohorts", content=b"{not json", headers={"content-type": "application/json"}
        )
    body = _assert_problem(response, 422)
    assert isinstance(body["errors"], list) and body["errors"]


async def test_get_unhandled_error_500() -> None:
    async with _client(_tiny_app(), lifespan=False) as client:
        response = await client.get("/boom")
    body = _assert_problem(response, 500)
    assert "Traceback" not in response.text
    assert "secret internals" not in response.text
    assert "RuntimeError" not in response.text
    assert set(body) == {"type", "title", "status", "detail"}


async def test_get_problem_error_extra_fields() -> None:
    async with _client(_tiny_app(), lifespan=False) as client:
        response = await client.get("/conflict")
    body = _assert_problem(response, 409)
    assert body["detail"] == "the enrollment is already approved"
    assert body["current_state"] == "approved"


async def test_get_answers_with_a_request_id(settings: Settings) -> None:
    async with _client(create_app(settings)) as client:
        first = await client.get("/healthz")
        second = await client.get("/healthz")
        echoed = await client.get("/healthz", headers={"x-request-id": "caller-chose-this"})
        missing = await client.get("/no/such/path")
    assert first.headers["x-request-id"]
    assert second.headers["x-request-id"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert echoed.headers["x-request-id"] == "caller-chose-this"
    assert missing.headers["x-request-id"]  # error answers carry it too
