"""What the API process holds for its lifetime: settings, the database engine, a Temporal client."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from temporalio.client import Client

from core.settings import Settings
from core.temporal import connect
from models.db import make_engine


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    _client: Client | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def create(cls, settings: Settings) -> AppState:
        return cls(settings=settings, engine=make_engine(settings.resolved_database_url))

    async def temporal(self) -> Client:
        """The shared client, connected on first use: the API starts even while Temporal is down."""
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = await connect(self.settings, identity="rentan-api")
        return self._client

    async def close(self) -> None:
        self.engine.dispose()
