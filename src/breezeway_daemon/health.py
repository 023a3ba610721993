"""Health: is the scheduler running, and did the database answer lately?

(``Health``: a background probe whose last result ``/healthz`` and ``/metrics`` read.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Protocol

import asyncpg
import structlog

from breezeway_daemon import __version__, metrics
from breezeway_daemon.config import Settings
from breezeway_daemon.db.pool import connect
from breezeway_daemon.errors import describe

log = structlog.get_logger(__name__)

HEALTH_WINDOW_PROBES = 4

LAST_SUCCESSES_SQL = """
    SELECT region_code, entity_type, max(sync_completed_at) AS at
    FROM breezeway.etl_sync_log
    WHERE sync_status = 'success' AND sync_completed_at IS NOT NULL
    GROUP BY region_code, entity_type
"""


# Served by the partial index on pending events (migration 006).
WEBHOOKS_PENDING_SQL = "SELECT count(*) FROM breezeway.webhook_events WHERE processed_at IS NULL"


class Watched(Protocol):
    """What the probe reads of the daemon: its settings, its schedule and (when on) its
    webhook service, whose pending events each probe counts."""

    schedule: Any

    @property
    def settings(self) -> Settings: ...


class Health:
    """The daemon's health, kept current by a background probe.

    ``Health`` probes the database every ``BREEZEWAY_HEALTH_PROBE_S`` seconds (default 15) with
    ``SELECT 1`` on a connection of its own (a pool busy with runs must not make a healthy database
    look dead), bounded by that interval. The daemon is healthy while its scheduler runs and the
    database answered within ``HEALTH_WINDOW_PROBES`` intervals (a minute by default). ``/healthz``
    and the ``breezeway_database_up`` gauge read the probe's last result: a request never waits for
    the database.

    Its first successful probe also reads each pair's last success from ``etl_sync_log`` (once), so
    the last-success gauge is right from the start, not only after the next run; with the webhook
    receiver on, each probe also counts the pending webhook events (one index scan), which
    ``/metrics`` shows without a query of its own.
    """

    def __init__(self, daemon: Watched) -> None:
        self.daemon = daemon
        self._answered: float | None = None  # loop time of the last answer
        self.last_answer_at: float | None = None  # Unix time of the last answer
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._history_read = False
        self.webhooks_pending: int | None = None
        self._reported_down = False

    @property
    def interval(self) -> float:
        return self.daemon.settings.health_probe_s

    # --- the verdict -------------------------------------------------------------
    def database_up(self) -> bool:
        if self._answered is None:
            return False
        age = asyncio.get_running_loop().time() - self._answered
        return age <= self.interval * HEALTH_WINDOW_PROBES

    def scheduler_running(self) -> bool:
        schedule = self.daemon.schedule
        return bool(schedule is not None and schedule.running)

    def report(self) -> tuple[bool, dict[str, Any]]:
        """Healthy or not, and the small JSON body that says why (nothing secret)."""
        database, scheduler = self.database_up(), self.scheduler_running()
        ago = None
        if self._answered is not None:
            ago = round(asyncio.get_running_loop().time() - self._answered, 1)
        healthy = database and scheduler
        return healthy, {
            "status": "ok" if healthy else "unavailable",
            "scheduler": "running" if scheduler else "stopped",
            "database": "ok" if database else "unreachable",
            "database_answered_s_ago": ago,
            "version": __version__,
        }

    # --- the probe ---------------------------------------------------------------
    async def start(self) -> None:
        """Probe once (so the first answer is already right), then every interval."""
        await self.probe()
        self._task = asyncio.get_running_loop().create_task(self._probe_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._drop_connection()

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.probe()

    async def probe(self) -> bool:
        """One ``SELECT 1`` within the interval; whether the database answered."""
        try:
            async with asyncio.timeout(self.interval):
                conn = await self._connection()
                await conn.fetchval("SELECT 1")
                if not self._history_read:
                    rows = await conn.fetch(LAST_SUCCESSES_SQL)
                    metrics.load_last_successes(
                        (row["region_code"], row["entity_type"], row["at"]) for row in rows
                    )
                    self._history_read = True
                if getattr(self.daemon, "webhooks", None) is not None:
                    self.webhooks_pending = await conn.fetchval(WEBHOOKS_PENDING_SQL)
        except Exception as err:  # noqa: BLE001 - any failure means "did not answer"
            await self._drop_connection()
            if not self._reported_down:
                self._reported_down = True
                log.warning("health_database_unanswered", error=describe(err) or "timed out")
            return False
        self._answered = asyncio.get_running_loop().time()
        self.last_answer_at = time.time()
        if self._reported_down:
            self._reported_down = False
            log.info("health_database_answered")
        return True

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            once = self.daemon.settings.model_copy(
                update={
                    "db_connect_attempts": 1,
                    "db_connect_timeout_s": min(
                        self.daemon.settings.db_connect_timeout_s, self.interval
                    ),
                }
            )
            self._conn = await connect(once, application_name="breezeway-daemon health")
        return self._conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()
