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
from core.logs import get_logger

router = APIRouter(tags=["health"])
log = get_logger("rentan.api")

CHECK_TIMEOUT_S = 3.0


@router.get("/healthz")
async def get_health() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "a dependency is not ready"}})
async def get_readiness(state: StateDep) -> Any:
    """Ready when the database answers and Temporal answers; otherwise 503 naming which. Why is
    logged, not answered: anyone may ask, and an error's text can name hosts and users."""
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(asyncio.to_thread(_ping_database, state), CHECK_TIMEOUT_S)
        checks["database"] = "ok"
    except Exception as exc:
        log.warning("database not ready", error=type(exc).__name__, detail=str(exc)[:300])
        checks["database"] = "unavailable"
    try:
        client = await asyncio.wait_for(state.temporal(), CHECK_TIMEOUT_S)
        await asyncio.wait_for(
            client.workflow_service.get_system_info(GetSystemInfoRequest()), CHECK_TIMEOUT_S
        )
        checks["temporal"] = "ok"
    except Exception as exc:
        log.warning("temporal not ready", error=type(exc).__name__, detail=str(exc)[:300])
        checks["temporal"] = "unavailable"
    failing = {k: v for k, v in checks.items() if v != "ok"}
    if failing:
        detail = "; ".join(f"{k} {v}" for k, v in failing.items())
        return problem(503, "Not ready", detail, checks=checks)
    return JSONResponse({"status": "ready", "checks": checks})


def _ping_database(state: StateDep) -> None:
    with state.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
