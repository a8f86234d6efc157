"""The FastAPI application: routers, problem+json errors, the shared engine and Temporal client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.middleware import RequestLogMiddleware
from api.routes import health
from api.state import AppState
from rentan.settings import Settings


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
    )
    install_error_handlers(app)
    app.add_middleware(RequestLogMiddleware)
    app.include_router(health.router)
    return app
