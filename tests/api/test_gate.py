"""The gate (api.gate): nobody's body is read before they are authenticated, and no body is
read past its route's limit, whether it says its length or comes chunked.

Each request is played straight into the app over ASGI, its body handed over in 64 KiB chunks
by a ``receive`` that counts what the app took: the figure a test asserts on is the bytes the
server read, not what it answered.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from api.gate import DEFAULT_BYTES, LIST_JSON_BYTES, LIST_UPLOAD_BYTES
from tests.api.conftest import Api

CHUNK = 64 * 1024


@dataclass
class Played:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    read: int = 0  # body bytes the app pulled from receive()


async def play(
    api: Api,
    method: str,
    path: str,
    *,
    size: int,
    headers: dict[str, str],
    declare_length: bool = True,
    filler: bytes = b" ",
    prefix: bytes = b"",
) -> Played:
    """Send ``size`` bytes of body (``filler`` repeated) in chunks; ``declare_length=False``
    sends it chunked, without a Content-Length."""
    played = Played()
    sent = 0
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if declare_length:
        raw_headers.append((b"content-length", str(size).encode()))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 50000),
        "server": ("rentan", 80),
        "app": api.app,
    }

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent >= size:
            await asyncio.sleep(3600)  # the client waits for an answer
        body = (prefix if sent == 0 else b"") + filler * (CHUNK // len(filler) + 1)
        chunk = body[: min(CHUNK, size - sent)]
        sent += len(chunk)
        played.read = sent
        return {"type": "http.request", "body": chunk, "more_body": sent < size}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            played.status = message["status"]
            played.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            played.body += message.get("body", b"")

    await asyncio.wait_for(api.app(scope, receive, send), timeout=60)
    return played


def nominations(api: Api) -> str:
    return f"/v1/programs/{api.program.code}/nominations"


async def test_a_60_mb_body_without_a_key_is_answered_401_before_a_byte_is_read(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer rtn_not-a-key"}):
        for declare in (True, False):
            played = await play(
                api,
                "POST",
                nominations(api),
                size=60 * 1024 * 1024,
                headers={"content-type": "application/json", **headers},
                declare_length=declare,
            )
            assert played.status == 401, played.body[:300]
            assert played.headers.get("www-authenticate") == "Bearer"
            assert played.read == 0, (headers, declare, played.read)


async def test_a_chunked_upload_past_the_limit_is_413_and_read_no_further(api: Api) -> None:
    """14 MB of multipart without a Content-Length: refused once the limit is passed."""
    played = await play(
        api,
        "POST",
        nominations(api),
        size=14 * 1024 * 1024,
        headers={
            "content-type": "multipart/form-data; boundary=xyz",
            **api.auth("village_operator"),
        },
        declare_length=False,
        prefix=(
            b"--xyz\r\n"
            b'Content-Disposition: form-data; name="file"; filename="list.csv"\r\n'
            b"Content-Type: text/csv\r\n\r\n"
        ),
        filler=b"1603011505850001,Warga,1985-05-15,L,bpd\r\n",
    )
    assert played.status == 413, played.body[:300]
    assert played.read <= LIST_UPLOAD_BYTES + CHUNK
    assert json.loads(played.body)["status"] == 413


async def test_every_route_holds_its_limit_on_bytes_received(api: Api) -> None:
    cases = [
        ("POST", nominations(api), "application/json", LIST_JSON_BYTES, "village_operator"),
        ("POST", "/v1/programs", "application/json", DEFAULT_BYTES, "admin"),
        ("POST", "/v1/coverage", "application/json", DEFAULT_BYTES, "auditor"),
    ]
    for method, path, content_type, limit, who in cases:
        for declare in (True, False):
            played = await play(
                api,
                method,
                path,
                size=limit + 3 * CHUNK,
                headers={"content-type": content_type, **api.auth(who)},
                declare_length=declare,
            )
            assert played.status == 413, (path, declare, played.body[:200])
            # Declared too long: refused before reading; chunked: read to the limit at most.
            assert played.read <= (0 if declare else limit + CHUNK), (path, played.read)
