"""Connecting to Temporal with rentan's data converter (encrypting codec, encoded failures)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import ClassVar

import temporalio.converter
from pydantic import TypeAdapter
from temporalio.client import Client, RPCTimeoutOrCancelledError, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)
from temporalio.exceptions import ApplicationError
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError, TLSConfig

from core.codec import EncryptionCodec
from core.settings import Settings

# What a call to Temporal raises when it did not get through: the server unreachable or
# refusing (``RPCError``), or its deadline passed first (the SDK raises a timed-out or cancelled
# Update as ``RPCTimeoutOrCancelledError``, which is not an ``RPCError``: a loaded dev server
# answers "context deadline exceeded"). The step may or may not have been taken; each caller
# answers "send it again".
NOT_SENT_ERRORS: tuple[type[Exception], ...] = (RPCError, RPCTimeoutOrCancelledError)

# One pydantic TypeAdapter per type for the whole process. The SDK gives every workflow instance
# a payload converter of its own, and with it an empty adapter cache: rebuilding the adapters for
# each workflow took ~4% of the worker's CPU in the bench's profile.
_type_adapter = functools.lru_cache(maxsize=1024)(TypeAdapter)


class _SharedAdapterJSONConverter(PydanticJSONPlainPayloadConverter):
    def __init__(self) -> None:
        super().__init__()
        self._type_adapter = _type_adapter


class PayloadConverter(CompositePayloadConverter):
    """The SDK's pydantic payload converter, with the process-wide adapter cache.

    One instance per process: it holds no state, and the SDK builds a data converter (and with it
    a payload converter) twice per workflow activation, once to decode and once to encode. Built
    anew each time, the converters and their caches took ~5% of the worker's busy time in the
    bench's profile.
    """

    _shared: ClassVar[PayloadConverter | None] = None

    def __new__(cls) -> PayloadConverter:
        shared = cls._shared
        if shared is None:
            shared = super().__new__(cls)
            json_converter = _SharedAdapterJSONConverter()
            CompositePayloadConverter.__init__(
                shared,
                *(
                    json_converter if isinstance(c, JSONPlainPayloadConverter) else c
                    for c in DefaultPayloadConverter.default_encoding_payload_converters
                ),
            )
            cls._shared = shared
        return shared

    def __init__(self) -> None:
        """Built once, in ``__new__``."""


def data_converter(settings: Settings) -> temporalio.converter.DataConverter:
    """The converter every rentan client and worker uses, so all payloads are encrypted."""
    codec = EncryptionCodec(key_id=settings.payload_key_id, keys=settings.payload_keys())
    # The pydantic converter handles dates in the dataclasses of ``workflows.messages``.
    return temporalio.converter.DataConverter(
        payload_converter_class=PayloadConverter,
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


def refusal_of(err: WorkflowUpdateFailedError) -> str:
    """Why a workflow refused an Update: its validator's (or handler's) own words."""
    cause = err.cause
    return cause.message if isinstance(cause, ApplicationError) else str(cause)


def metrics_runtime(address: str) -> Runtime:
    """An SDK runtime exporting its metrics (and the activities' own, such as
    ``rentan_projection_lag``) for Prometheus to scrape at ``http://<address>/metrics``."""
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))


async def connect(
    settings: Settings, *, identity: str | None = None, runtime: Runtime | None = None
) -> Client:
    """A client for the configured cluster and namespace."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        tls=tls_config(settings),
        api_key=settings.temporal_api_key,
        identity=identity,
        runtime=runtime,
    )
