"""Personal data sealed at rest in the projection: AES-256-GCM under keys derived from the payload
keys, bound to the row it belongs to.

The birth date is the six hidden digits of a masked NIK: stored in plain beside the mask it
would give the whole NIK back to anyone holding a copy of the database. Sealed, the database
alone narrows a NIK no further than the ages a program allows. The seal names its key id, so
it opens with a rotated-out key as long as that key is kept (``RENTAN_PAYLOAD_OLD_KEYS``).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.settings import Settings

_NONCE = 12
_PURPOSE = b"rentan projection seal v1"


class SealBroken(ValueError):
    """A sealed value that does not open: another row's, tampered with, or an unknown key."""


def _derived(key: bytes) -> AESGCM:
    # A key of its own, not the payload key itself: one key, one purpose.
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PURPOSE)
    return AESGCM(hkdf.derive(key))


class Sealer:
    """Seals with the current key; opens with whichever key the sealed value names."""

    def __init__(self, *, key_id: str, keys: Mapping[str, bytes]) -> None:
        if key_id not in keys:
            raise ValueError(f"current key id {key_id!r} is not among the keys")
        if any(":" in kid for kid in keys):
            raise ValueError("a key id cannot contain ':'")
        self._key_id = key_id
        self._ciphers = {kid: _derived(key) for kid, key in keys.items()}

    def seal(self, value: str, *, row: str) -> str:
        """``value`` sealed for the row ``row`` (it opens for that row only)."""
        nonce = os.urandom(_NONCE)
        sealed = self._ciphers[self._key_id].encrypt(nonce, value.encode(), row.encode())
        return f"{self._key_id}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, *, row: str) -> str:
        key_id, _, body = sealed.partition(":")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise SealBroken(f"sealed with unknown key id {key_id!r}")
        try:
            raw = base64.b64decode(body, validate=True)
            return cipher.decrypt(raw[:_NONCE], raw[_NONCE:], row.encode()).decode()
        except Exception as exc:  # binascii.Error, InvalidTag, UnicodeDecodeError
            raise SealBroken("sealed value does not open for this row") from exc


def sealer_for(settings: Settings) -> Sealer:
    """The sealer the settings' payload keys give."""
    return Sealer(key_id=settings.payload_key_id, keys=settings.payload_keys())
