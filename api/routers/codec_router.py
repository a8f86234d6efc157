"""The payload codec endpoint for the Temporal UI (``--codec-endpoint``), for auditors only.

Temporal keeps enrollment payloads encrypted; an authorized auditor points the Temporal UI's
"Codec Server" setting at ``http://127.0.0.1:8000/codec`` (passing their API key as the access
token) to read decoded histories. Protocol: POST ``/codec/decode`` and ``/codec/encode`` with
``{"payloads": [...]}`` in protobuf JSON, as Temporal's codec server specification describes.
"""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidTag
from fastapi import APIRouter, Request
from google.protobuf.json_format import MessageToDict, ParseDict
from temporalio.api.common.v1 import Payloads

from api.auth import require
from api.deps import StateDep
from api.problems import ProblemError
from core.codec import EncryptionCodec, PayloadKeyUnknown, PayloadNotEncrypted
from core.temporal import data_converter
from services.keys import Role

router = APIRouter(prefix="/codec", tags=["codec"], dependencies=[require(Role.AUDITOR)])


async def _payloads(request: Request) -> Payloads:
    try:
        body = await request.json()
        return ParseDict({"payloads": body.get("payloads", [])}, Payloads())
    except Exception as exc:  # any malformed body is the caller's error, not ours
        raise ProblemError(f"body must be {{'payloads': [...]}} in protobuf JSON: {exc}") from None


@router.post("/decode")
async def decode_payloads(request: Request, state: StateDep) -> dict[str, Any]:
    """Decrypt payloads for display in the Temporal UI."""
    codec = data_converter(state.settings).payload_codec
    assert isinstance(codec, EncryptionCodec)
    try:
        decoded = [codec.decrypt(p) for p in (await _payloads(request)).payloads]
    except (PayloadKeyUnknown, PayloadNotEncrypted, InvalidTag):
        raise ProblemError("a payload was not encrypted with a key this server holds") from None
    return MessageToDict(Payloads(payloads=decoded))


@router.post("/encode")
async def encode_payloads(request: Request, state: StateDep) -> dict[str, Any]:
    """Encrypt payloads (the UI encodes what an operator sends, e.g. a signal's input)."""
    codec = data_converter(state.settings).payload_codec
    assert codec is not None
    encoded = await codec.encode(list((await _payloads(request)).payloads))
    return MessageToDict(Payloads(payloads=encoded))
