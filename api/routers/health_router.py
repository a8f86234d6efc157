"""Liveness and readiness: ``/healthz`` and ``/readyz`` (database and Temporal)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

from api.deps import StateDep
from api.problems import problem

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_S = 3.0


@router.get("/healthz")
async def get_health() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "a dependency is not ready"}})
async def get_readiness(state: StateDep) -> Any:
    """Ready when the database answers and Temporal answers; otherwise 503 naming the reason."""
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(asyncio.to_thread(_ping_database, state), CHECK_TIMEOUT_S)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}: {exc}"[:300]
    try:
        client = await asyncio.wait_for(state.temporal(), CHECK_TIMEOUT_S)
        await asyncio.wait_for(
            client.workflow_service.get_system_info(GetSystemInfoRequest()), CHECK_TIMEOUT_S
        )
        checks["temporal"] = "ok"
    except Exception as exc:
        checks["temporal"] = f"unavailable: {type(exc).__name__}: {exc}"[:300]
    failing = {k: v for k, v in checks.items() if v != "ok"}
    if failing:
        detail = "; ".join(f"{k} {v}" for k, v in failing.items())
        return problem(503, "Not ready", detail, checks=checks)
    return JSONResponse({"status": "ready", "checks": checks})


def _ping_database(state: StateDep) -> None:
    with state.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
