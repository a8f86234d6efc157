"""Connecting to Temporal with rentan's data converter (encrypting codec, encoded failures)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import temporalio.converter
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import TLSConfig

from rentan.codec import EncryptionCodec
from rentan.settings import Settings


def data_converter(settings: Settings) -> temporalio.converter.DataConverter:
    """The converter every rentan client and worker uses, so all payloads are encrypted."""
    codec = EncryptionCodec(
        key_id=settings.payload_key_id,
        keys={settings.payload_key_id: settings.payload_key_bytes()},
    )
    # The pydantic converter handles dates in the dataclasses of ``workflows.messages``.
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=temporalio.converter.DefaultFailureConverterWithEncodedAttributes,
    )


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path else None


def tls_config(settings: Settings) -> TLSConfig | bool:
    if not settings.temporal_tls:
        return False
    return TLSConfig(
        server_root_ca_cert=_read(settings.temporal_tls_ca),
        client_cert=_read(settings.temporal_tls_cert),
        client_private_key=_read(settings.temporal_tls_key),
    )


async def connect(settings: Settings, *, identity: str | None = None) -> Client:
    """A client for the configured cluster and namespace."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        tls=tls_config(settings),
        api_key=settings.temporal_api_key,
        identity=identity,
    )
