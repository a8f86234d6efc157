"""The gate every request passes before the app reads a byte of its body.

FastAPI reads (and buffers) a request's body before its dependencies run, so authentication in a
dependency comes too late: a 60 MB body without a key would be read whole before its 401. Here,
in plain ASGI:

* the caller is authenticated first (``services.keys.authenticate``, off the event loop) and
  answered 401 at once without a valid key, except on the public paths (health, the API's
  documents); the principal is handed to the routes in ``scope["state"]["principal"]``;
* the body's size is held to the route's limit on the bytes actually received, whether the
  request says its length or is chunked: 413 as soon as it is passed, the rest never read.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlmodel import Session
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem
from services.keys import Principal, authenticate

MiB = 1024 * 1024
PUBLIC = ("/healthz", "/readyz", "/docs", "/redoc", "/openapi.json")
# Bodies above these are refused: a village's list (JSON, or a 5 MiB file with its form), the
# Temporal UI's payloads for the codec, and every other step or query (a batch of 5,000 ids
# is under 300 KB).
LIST_JSON_BYTES = 8 * MiB
LIST_UPLOAD_BYTES = 5 * MiB + 64 * 1024
CODEC_BYTES = 4 * MiB
DEFAULT_BYTES = 1 * MiB
CHALLENGE = [(b"www-authenticate", b"Bearer")]


class BodyTooLarge(Exception):
    pass


def body_limit(method: str, path: str, content_type: str) -> int:
    if method == "POST" and path.endswith("/nominations"):
        return LIST_UPLOAD_BYTES if content_type.startswith("multipart/") else LIST_JSON_BYTES
    if path.startswith("/codec/"):
        return CODEC_BYTES
    return DEFAULT_BYTES


def is_public(path: str) -> bool:
    return path in PUBLIC or path.startswith("/docs/")


class Gate:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers") or []}
        path, method = scope["path"], scope["method"]
        content_type = headers.get("content-type", b"").decode("latin-1").lower()
        limit = body_limit(method, path, content_type)
        if not is_public(path):
            principal = await _principal(scope, headers.get("authorization"))
            if isinstance(principal, str):
                _name_the_route(scope)
                response = problem(401, "Unauthorized", principal)
                response.raw_headers.extend(CHALLENGE)
                await response(scope, receive, send)
                return
            scope.setdefault("state", {})["principal"] = principal
        if _declared_length(headers) > limit:
            await _refuse_size(scope, receive, send, limit)
            return

        received = 0
        overflowed = started = False

        async def counted() -> Message:
            nonlocal received, overflowed
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    overflowed = True
                    raise BodyTooLarge
            return message

        async def tracked(message: Message) -> None:
            # A parser that catches the overflow answers 400 of its own: the 413 replaces it.
            nonlocal started
            if overflowed:
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _refuse_size(scope, receive, send, limit)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            if started:
                raise
            started = True
            await _refuse_size(scope, receive, send, limit)


def _declared_length(headers: dict[str, bytes]) -> int:
    try:
        return int(headers.get("content-length", b"0") or 0)
    except ValueError:
        return 0


def _name_the_route(scope: Scope) -> None:
    """The route a refused request was for, for its log line (routing has not run yet)."""
    for route in getattr(scope["app"].state, "named_routes", ()):
        if route.matches(scope)[0] is Match.FULL:
            scope["route"] = route
            return


async def _refuse_size(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    _name_the_route(scope)
    detail = f"the request body is larger than {limit // 1024:,} KiB"
    await problem(413, "Payload too large", detail)(scope, receive, send)


async def _principal(scope: Scope, authorization: bytes | None) -> Principal | str:
    """The caller, or why not (the 401's detail)."""
    scheme, _, key = (authorization or b"").decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return "an API key is required: Authorization: Bearer <key>"
    engine: Any = scope["app"].state.rentan.engine

    def look_up() -> Principal | None:
        with Session(engine) as session:
            return authenticate(session, key.strip())

    principal = await asyncio.to_thread(look_up)
    return principal if principal is not None else "unknown, expired or revoked API key"
