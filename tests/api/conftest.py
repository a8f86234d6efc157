"""An API under test: the real app over ASGI, a worker on the time-skipping server, role keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.state import AppState
from models.tables import Program
from services.keys import Role, create_key
from core.settings import Settings
from tests.harness import (
    OTHER_VILLAGE,
    VILLAGE,
    Sim,
    make_program,
    make_sim,
    running_worker,
    server_today,
)


@dataclass
class Api:
    """Everything a test needs to drive the API as each role would."""

    app: FastAPI
    http: httpx.AsyncClient
    engine: Engine
    settings: Settings
    env: WorkflowEnvironment
    sim: Sim
    program: Program
    keys: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        """Headers for one of: village_operator, other_village_operator, dpmd_verifier,
        budget_officer, auditor, admin."""
        return {"Authorization": f"Bearer {self.keys[who]}"}


@pytest.fixture
async def api(
    time_skipping_env: WorkflowEnvironment, settings: Settings, engine: Engine
) -> AsyncIterator[Api]:
    keys = {
        role.value: create_key(
            engine,
            role=role,
            name=f"test-{role.value}",
            village_code=VILLAGE if role == Role.VILLAGE_OPERATOR else None,
        )
        for role in Role
    }
    keys["other_village_operator"] = create_key(
        engine, role=Role.VILLAGE_OPERATOR, name="test-other-village", village_code=OTHER_VILLAGE
    )
    # Dated from the test server's clock, which earlier tests may have moved months ahead.
    start = (await server_today(time_skipping_env)).replace(day=1)
    program = make_program(engine, start=start)
    sim = make_sim()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        state: AppState = app.state.rentan
        state._client = time_skipping_env.client  # the test server instead of a new connection
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://rentan") as http,
            running_worker(time_skipping_env.client, settings, engine, sim),
        ):
            yield Api(app, http, engine, settings, time_skipping_env, sim, program, keys)
