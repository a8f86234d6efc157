"""The FastAPI application: routers, problem+json errors, the shared engine and Temporal client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api.deps import no_nul_in_url
from api.gate import Gate
from api.problems import document_problems, install_error_handlers
from api.request_log import RequestLogMiddleware
from api.routers import (
    batches_router,
    codec_router,
    conflicts_router,
    enrollments_router,
    health_router,
    nominations_router,
    programs_router,
    records_router,
)
from api.state import AppState
from core.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    """An app bound to ``settings``; the Temporal client connects lazily (readyz reports it)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = AppState.create(settings)
        app.state.rentan = state
        try:
            yield
        finally:
            await state.close()

    app = FastAPI(
        title="rentan",
        version="1.0",
        description="Enrollment of vulnerable village workers into BPJS Ketenagakerjaan.",
        lifespan=lifespan,
        dependencies=[Depends(no_nul_in_url)],
    )
    install_error_handlers(app)
    # Outermost last: CORS (a preflight needs no key), the request log, then the gate.
    app.add_middleware(Gate)
    app.add_middleware(RequestLogMiddleware)
    routers = [
        module.router
        for module in (
            health_router,
            programs_router,
            nominations_router,
            enrollments_router,
            batches_router,
            records_router,
            conflicts_router,
            codec_router,
        )
    ]
    for router in routers:
        app.include_router(router)
    # Each route by its full path, for the gate to name what it refused before routing ran.
    app.state.named_routes = [route for router in routers for route in router.routes]
    document_problems(app)
    # The Temporal UI (another origin) calls the codec endpoint from the browser.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=[
            f"http://127.0.0.1:{settings.temporal_ui_port}",
            f"http://localhost:{settings.temporal_ui_port}",
        ],
        allow_methods=["POST"],
        allow_headers=["Authorization", "Content-Type", "X-Namespace"],
        allow_credentials=True,
    )
    return app
