"""An API under test: the real app over ASGI, on the session's rig (worker, projection,
time-skipping server), with one key per role and a program of the test's own."""

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
from core.settings import Settings
from models.tables import Program
from services.keys import Role, create_key
from tests.harness import OTHER_VILLAGE, VILLAGE, Rig


@dataclass
class Api:
    """Everything a test needs to drive the API as each role would."""

    app: FastAPI
    http: httpx.AsyncClient
    rig: Rig
    program: Program
    keys: dict[str, str]

    @property
    def env(self) -> WorkflowEnvironment:
        return self.rig.env

    @property
    def engine(self) -> Engine:
        return self.rig.engine

    @property
    def settings(self) -> Settings:
        return self.rig.settings

    def auth(self, who: str) -> dict[str, str]:
        """Headers for one of: village_operator, other_village_operator, dpmd_verifier,
        budget_officer, auditor, admin."""
        return {"Authorization": f"Bearer {self.keys[who]}"}


@pytest.fixture
async def api(rig: Rig, program: Program) -> AsyncIterator[Api]:
    keys = {
        role.value: create_key(
            rig.engine,
            role=role,
            name=f"test-{role.value}",
            village_code=VILLAGE if role == Role.VILLAGE_OPERATOR else None,
        )
        for role in Role
    }
    keys["other_village_operator"] = create_key(
        rig.engine,
        role=Role.VILLAGE_OPERATOR,
        name="test-other-village",
        village_code=OTHER_VILLAGE,
    )
    app = create_app(rig.settings)
    async with app.router.lifespan_context(app):
        state: AppState = app.state.rentan
        state._client = rig.client  # the session's test server instead of a new connection
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rentan") as http:
            yield Api(app, http, rig, program, keys)
