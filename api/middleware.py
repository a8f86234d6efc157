"""One structlog line per request, with a request id bound for everything logged meanwhile."""

from __future__ import annotations

import time
import uuid

import structlog
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response

from rentan.logs import get_logger

log = get_logger("rentan.api.request")


class RequestLogMiddleware(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            response.headers["x-request-id"] = request_id
            return response
        finally:
            # Routing and authentication wrote into the shared scope and request.state.
            route = request.scope.get("route")
            path_params = request.scope.get("path_params") or {}
            log.info(
                "request",
                method=request.method,
                route=getattr(route, "path", "unmatched"),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
                actor=getattr(request.state, "actor", None),
                role=getattr(request.state, "role", None),
                enrollment_id=path_params.get("enrollment_id"),
            )
            structlog.contextvars.clear_contextvars()
