"""What a run is asked to do, what it answers, and what the runs of a process share."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date

import asyncpg

from breezeway_daemon.api.client import BreezewayApi
from breezeway_daemon.config import Settings
from breezeway_daemon.db.lease import RunLease, UnrecordedEnd
from breezeway_daemon.db.pool import open_pool
from breezeway_daemon.db.runs import RequestMode, RunCounts, RunStatus
from breezeway_daemon.errors import ErrorKind


@dataclass(frozen=True)
class SyncRequest:
    """What to run; ``since`` (and ``until``, default today) bound a resync's window."""

    region: str
    entity: str
    mode: RequestMode = RequestMode.INCREMENTAL
    trigger: str = "manual"
    since: date | None = None
    until: date | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", RequestMode(self.mode))
        if self.mode is RequestMode.RESYNC and self.since is None:
            raise ValueError("a resync needs the start of its window (since)")


@dataclass
class RunResult:
    region: str
    entity: str
    status: RunStatus
    run_id: int | None = None
    counts: RunCounts = field(default_factory=RunCounts)
    error: str | None = None
    error_kind: ErrorKind | None = None
    duration_s: float = 0.0
    mode: RequestMode = RequestMode.INCREMENTAL
    listing_size: int | None = None
    parents_skipped: int = 0
    """Parents the task polling plan left to a later run (``sync.polling``)."""

    def __post_init__(self) -> None:
        self.status = RunStatus(self.status)
        self.mode = RequestMode(self.mode)

    @property
    def failed(self) -> bool:
        return self.status is RunStatus.FAILED


@dataclass
class SyncContext:
    """What runs share: settings, the pool, the API, and an optional progress callback.

    The settings in force live here (``reconfigure`` swaps them, and the API's)."""

    settings: Settings
    pool: asyncpg.Pool
    api: BreezewayApi
    on_progress: Callable[[str, str, RunCounts], None] | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    """Set on shutdown: runs stop after the batch transaction they are in."""
    active_runs: dict[int, RunLease] = field(default_factory=dict)
    """Leases of this process's runs by run id (the watchdog cancels over-time ones)."""
    unrecorded_ends: dict[tuple[str, str], UnrecordedEnd] = field(default_factory=dict)
    """Runs that ended while the database was unreachable, by (region, entity): written
    by the pair's next run before it starts."""

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, settings: Settings, *, application_name: str = "breezeway-daemon"
    ) -> AsyncIterator[SyncContext]:
        """A pool and an API client for ``settings``; both closed on exit."""
        async with open_pool(settings, application_name) as pool:
            api = BreezewayApi(settings, pool)
            try:
                yield cls(settings, pool, api)
            finally:
                await api.aclose()

    def reconfigure(self, settings: Settings) -> None:
        """Use reloaded settings: from the next run on, and at once for the API's pacing."""
        self.settings = settings
        self.api.update_settings(settings)
