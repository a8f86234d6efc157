"""Configuration of the BPJS simulator, read from the environment (prefix ``RENTAN_BPJS_SIM_``).

Which NIKs the population registry does not know, which people BPJS already covers, and the
fault-injection knobs (all off by default). Lists are comma-separated in the environment, e.g.
``RENTAN_BPJS_SIM_UNKNOWN_NIKS=1603011505850001,1603015505850002``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "RENTAN_BPJS_SIM_"


class FaultKnobs(BaseModel):
    """Fault injection for the ``POST /v1/participants*`` routes; replaceable at runtime."""

    fault_rate: float = Field(default=0.0, ge=0.0, le=1.0)  # answered 503 before doing anything
    timeout_rate: float = Field(default=0.0, ge=0.0, le=1.0)  # sleep timeout_s, then 504
    timeout_s: float = Field(default=15.0, ge=0.0)
    throttle_rate: float = Field(default=0.0, ge=0.0, le=1.0)  # 429 with Retry-After
    retry_after_s: float = Field(default=1.0, ge=0.0)
    latency_ms: int = Field(default=0, ge=0)  # added to every participant request
    seed: int | None = None  # seeds the random draws, for reproducible runs


class SimConfig(FaultKnobs, BaseSettings):
    """Everything the simulator reads from its environment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    # Dukcapil does not know these NIKs, nor any whose 4-digit serial starts with the prefix.
    unknown_niks: Annotated[frozenset[str], NoDecode] = frozenset()
    unknown_serial_prefix: str = "99"
    # BPJS already covers these people (registered elsewhere, before this simulator started).
    registered_niks: Annotated[frozenset[str], NoDecode] = frozenset()
    registered_serial_prefix: str = "98"

    @field_validator("unknown_niks", "registered_niks", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value

    def fault_knobs(self) -> FaultKnobs:
        return FaultKnobs.model_validate(self.model_dump(include=set(FaultKnobs.model_fields)))
