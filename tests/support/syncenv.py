"""A served simulator with a ``SyncContext`` on it: the sync engine as tests drive it."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from breezeway_daemon.config import Settings
from breezeway_daemon.sync import SyncContext
from breezeway_sim import Simulator, SimulatorServer

from support.simenv import SimEnv, settings_for


@dataclass
class SyncEnv(SimEnv):
    """A served simulator, settings for it and a SyncContext over them."""

    ctx: SyncContext

    @property
    def pool(self) -> asyncpg.Pool:
        return self.ctx.pool

    @property
    def database(self) -> str:
        return urlsplit(self.settings.dsn()).path.lstrip("/")

    def company(self, region: str) -> int:
        return self.regions[region]

    def reconfigure(self, **changes: Any) -> None:
        """Change settings of the context and its API client, as a reload does."""
        self.settings = self.settings.model_copy(update=changes)
        self.ctx.settings = self.settings
        self.ctx.api.update_settings(self.settings)

    def progress(self, callback: Callable[..., None]) -> SyncContext:
        """The same context with a progress callback (called after each committed batch)."""
        return dataclasses.replace(self.ctx, on_progress=callback)


@contextlib.asynccontextmanager
async def served(
    base: Settings, sim: Simulator, *, application_name: str | None = None, **overrides: Any
) -> AsyncIterator[SyncEnv]:
    """``sim`` over HTTP, settings for it (``overrides`` over ``settings_for``'s) and a
    SyncContext whose connections say ``application_name`` (else the daemon's own)."""
    async with SimulatorServer(sim, port=0) as server:
        settings = settings_for(base, sim, server.base_url, **overrides)
        named = {} if application_name is None else {"application_name": application_name}
        async with SyncContext.open(settings, **named) as ctx:
            yield SyncEnv(sim, server, settings, ctx)
