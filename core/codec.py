"""AES-256-GCM payload codec: NIK, names and birth dates never sit in plain text in Temporal.

Every payload the client or a worker sends is encrypted before it leaves the process (but for
``None``, which carries nothing), and one that arrives in plain is refused (rentan sends none):
it decodes to a value no converter reads, so the step that carried it is rejected.
The key id travels in the payload's metadata, so keys rotate: payloads are encrypted with the
current key and decrypted with whichever configured key they name, old keys being kept
(``RENTAN_PAYLOAD_OLD_KEYS``) until no open workflow holds a payload they sealed. Failure
messages and stack traces are moved into encoded attributes too
(``DefaultFailureConverterWithEncodedAttributes``), since an error message may quote a name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
_NULL = b"binary/null"
# What a plain payload decodes to: no converter reads this encoding, so its reader fails.
REFUSED = b"binary/refused-plain"
KEY_ID = "encryption-key-id"
_NONCE = 12


class PayloadKeyUnknown(ValueError):
    """A payload was encrypted with a key id this process does not have."""


class PayloadNotEncrypted(ValueError):
    """A payload came in plain (not from rentan: typed into a UI, say) and is refused."""


class EncryptionCodec(PayloadCodec):
    """Encrypts with the current key; decrypts with whichever configured key the payload names."""

    def __init__(self, *, key_id: str, keys: Mapping[str, bytes]) -> None:
        if key_id not in keys:
            raise ValueError(f"current key id {key_id!r} is not among the keys")
        self._key_id = key_id
        self._ciphers = {kid: AESGCM(key) for kid, key in keys.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._read(p) for p in payloads]

    def _read(self, payload: Payload) -> Payload:
        try:
            return self.decrypt(payload)
        except PayloadNotEncrypted:
            # Refused in the value, not the batch: an Update whose argument cannot be read is
            # rejected, where a codec error would fail the workflow task and stall the workflow.
            return Payload(metadata={"encoding": REFUSED})

    def encrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") == _NULL and not payload.data:
            # None (what the projection's local activities return) carries nothing to hide.
            return payload
        nonce = os.urandom(_NONCE)
        sealed = self._ciphers[self._key_id].encrypt(nonce, payload.SerializeToString(), None)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID: self._key_id.encode()},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        """The payload sealed by ``encrypt``; ``None`` passes as it is, anything else plain is
        refused: every payload rentan sends is sealed, so a plain one was made elsewhere."""
        encoding = payload.metadata.get("encoding")
        if encoding == _NULL and not payload.data:
            return payload
        if encoding != ENCODING:
            raise PayloadNotEncrypted(f"payload in plain {encoding!r} refused")
        key_id = payload.metadata.get(KEY_ID, b"").decode()
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadKeyUnknown(f"payload encrypted with unknown key id {key_id!r}")
        plain = cipher.decrypt(payload.data[:_NONCE], payload.data[_NONCE:], None)
        return Payload.FromString(plain)
