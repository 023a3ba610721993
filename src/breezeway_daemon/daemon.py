"""``breezeway-daemon serve``: the long-running service, start to stop (``Daemon``:
``start``, the jobs, the signals, ``shutdown``; each step a small method).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from breezeway_daemon import metrics
from breezeway_daemon.alerts import Alerts, report_batch
from breezeway_daemon.api.client import BreezewayApi
from breezeway_daemon.config import ConfigError, Settings, env_file_is_private, load_settings
from breezeway_daemon.db import schema
from breezeway_daemon.db.pool import connect, create_pool
from breezeway_daemon.db.runs import (
    HOST,
    PID,
    RequestMode,
    RunStatus,
    advisory_lock_key,
    fail_running,
    try_lock,
)
from breezeway_daemon.errors import DatabaseError, describe
from breezeway_daemon.http import ListenerError, start_listener, stop_listener
from breezeway_daemon.memory import fix_mmap_threshold
from breezeway_daemon.notify import Notifier, keep_watchdog_fed, watchdog_interval
from breezeway_daemon.retention import purge
from breezeway_daemon.schedule import BATCH_JOBS, Schedule
from breezeway_daemon.sync import RunResult, SyncContext, run_batch
from breezeway_daemon.watchdog import own_run_sessions, sweep
from breezeway_daemon.webhooks.service import WebhookService

log = structlog.get_logger(__name__)

# Settings the running process cannot swap on reload; a change waits for a restart.
RESTART_ONLY = ("database_url", "db_pool_size", "api_base_url", "state_dir", "http_listen")


def batch_lock_key(kind: str) -> int:
    """The advisory-lock key of a batch kind, shared by every daemon on the database."""
    return advisory_lock_key(f"breezeway-batch/{kind}")


class StartupError(Exception):
    """The daemon cannot start (schema too new, database unreachable)."""


@contextlib.asynccontextmanager
async def claim_batch(settings: Settings, kind: str) -> AsyncIterator[bool]:
    """False while another daemon runs the ``kind`` batch; True (and held) otherwise.

    Several daemons may share one database (more hosts, one configuration): a batch holds a
    PostgreSQL advisory lock for its kind while it runs, and a daemon whose batch finds it held
    skips that batch quietly (every pair ``skipped``), so each pair runs once per scheduled batch;
    per-pair run locks still keep any two runs of a pair (a manual one included) from overlapping.

    The lock lives on a connection of its own for the batch's length; closing it
    releases the lock, as does the death of the process. Without the database the
    batch goes ahead: its runs fail or skip pair by pair, as they would anyway.
    """
    conn: asyncpg.Connection | None = None
    ours = True
    try:
        # One attempt: a database that is down fails the batch's runs soon enough.
        once = settings.model_copy(update={"db_connect_attempts": 1})
        conn = await connect(once, application_name="breezeway-daemon batch")
        ours = await try_lock(conn, batch_lock_key(kind))
    except Exception as err:  # noqa: BLE001 - the per-pair locks still guard the runs
        log.warning("batch_lock_unavailable", kind=kind, error=describe(err))
    try:
        yield ours
    finally:
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.close(timeout=5))


class Daemon:
    """The service. ``await Daemon(settings).run()`` returns the exit code."""

    def __init__(
        self, settings: Settings, *, env_file: Path | None = None, notifier: Notifier | None = None
    ):
        self._settings_at_start = settings
        self.env_file = env_file
        self.notifier = notifier or Notifier()
        self.stop_requested = asyncio.Event()
        self.pool: asyncpg.Pool | None = None
        self.alerts: Alerts | None = None
        self.webhooks: WebhookService | None = None
        self.schedule: Schedule | None = None
        self.ctx: SyncContext | None = None
        self._batches: set[asyncio.Task[Any]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._reload_lock = asyncio.Lock()
        self.last_batch: str = "none yet"
        self.http: Any = None  # the HTTP listener (http/), when BREEZEWAY_HTTP_LISTEN is set

    @property
    def settings(self) -> Settings:
        """The configuration in force. Once started it lives in the sync context, which
        runs, the API client and the daemon all read: a reload swaps it there."""
        return self.ctx.settings if self.ctx is not None else self._settings_at_start

    # --- lifecycle ---------------------------------------------------------------
    async def run(self) -> int:
        try:
            await self.start()
        except (StartupError, ListenerError) as err:
            log.error("daemon_start_failed", error=str(err))
            await self.close()
            return 1
        await self.stop_requested.wait()
        await self.shutdown()
        return 0

    async def start(self) -> None:
        """Migrate the schema (or refuse a schema newer than this version), open the pool
        and the API client, fail this host's runs that died with a previous process, schedule
        the jobs, start the systemd watchdog pings, and tell systemd ``READY=1``."""
        log.info("daemon_starting", regions=list(self.settings.enabled_regions))
        self._install_signal_handlers()
        self._warn_if_env_file_is_readable()
        await self._migrate()
        self.pool = await create_pool(self.settings, application_name="breezeway-daemon serve")
        settings = self.settings
        self.ctx = SyncContext(settings, self.pool, BreezewayApi(settings, self.pool))
        self.alerts = Alerts(settings, self.pool)
        await self._sweep_runs()  # this host's runs that died with a previous process
        self.http = await start_listener(self)  # /metrics, /healthz: before READY=1
        self.webhooks = await WebhookService.start(self)  # routes, worker: before READY=1
        self.schedule = Schedule(self.settings, {
            "hourly": (self.scheduled_batch, ("hourly",)),
            "daily": (self.scheduled_batch, ("daily",)),
            "watchdog": (self._sweep_runs, ()),
            "retention": (self._retention, ()),
        })  # fmt: skip
        self._start_watchdog_pings()
        self.notifier.ready(self._status())
        log.info("daemon_ready", next_runs=self._next_runs())

    async def shutdown(self) -> None:
        """Stop scheduling; running runs finish the batch transaction they are in and stop;
        after ``shutdown_grace_s`` whatever still runs is cancelled and its row marked
        ``failed`` ("interrupted by shutdown"); close everything."""
        log.info("daemon_stopping", running_batches=len(self._batches))
        self.notifier.stopping()
        if self.schedule is not None:
            self.schedule.stop()
        if self.ctx is not None:
            self.ctx.stopping.set()  # runs stop after the batch transaction they are in
        if self._batches:
            done, pending = await asyncio.wait(
                self._batches, timeout=self.settings.shutdown_grace_s
            )
            for task in pending:
                task.cancel()
            if pending:
                log.warning("daemon_cancelling_runs", batches=len(pending))
                await asyncio.wait(pending, timeout=15)
        await self._fail_own_running_runs("interrupted by shutdown")
        await self.close()
        log.info("daemon_stopped")

    async def _fail_own_running_runs(self, reason: str) -> None:
        """The safety net: no row of this process stays ``running`` after it stops."""
        if self.pool is None:
            return
        try:
            # A twin container (same host name, same pid) keeps its live runs.
            own = own_run_sessions(self.ctx.active_runs if self.ctx is not None else {})
            closed = await fail_running(self.pool, reason, host=HOST, pid=PID, own_sessions=own)
        except (DatabaseError, OSError, asyncpg.InterfaceError) as err:
            log.error("shutdown_runs_not_closed", error=describe(err))
            return
        if closed:
            log.warning("shutdown_runs_closed", rows=closed, reason=reason)

    async def close(self) -> None:
        await stop_listener(self.http)  # first: no request arrives for what stops next
        if self.webhooks is not None:
            await self.webhooks.stop()
        for task in self._background:
            task.cancel()
        if self.ctx is not None:
            await self.ctx.api.aclose()
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.close(), 10)

    # --- start-up steps ----------------------------------------------------------
    def _install_signal_handlers(self) -> None:
        """SIGHUP re-reads the env file and environment, validates the whole configuration,
        then swaps it and reschedules; an invalid one is rejected and the old one kept
        (``RELOADING=1`` ... ``READY=1`` either way). SIGUSR1 runs the hourly batch now.
        SIGTERM/SIGINT stop the service."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self.request_stop, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self._spawn, self.reload)
        loop.add_signal_handler(signal.SIGUSR1, self._spawn, self.run_batch_now)

    def _warn_if_env_file_is_readable(self) -> None:
        path = self.env_file or self.settings.env_file
        if not env_file_is_private(path):
            log.warning("env_file_readable_by_others", path=str(path),
                        remedy=f"chmod 600 {path}: it holds client secrets")  # fmt: skip

    async def _migrate(self) -> None:
        try:
            conn = await connect(self.settings, application_name="breezeway-daemon migrate")
        except Exception as err:  # noqa: BLE001 - reported as the reason it did not start
            raise StartupError(describe(err)) from err
        try:
            applied = await schema.migrate(conn)
        except schema.SchemaTooNew as err:
            raise StartupError(str(err)) from err
        finally:
            await conn.close()
        if applied:
            log.info("schema_migrated", applied=[m.version for m in applied])

    def _start_watchdog_pings(self) -> None:
        interval = watchdog_interval()
        if interval is not None and self.notifier.enabled:
            self._spawn(keep_watchdog_fed, self.notifier, interval)
            log.info("systemd_watchdog_enabled", ping_every_s=interval)

    # --- signals -----------------------------------------------------------------
    def request_stop(self, signame: str = "stop") -> None:
        if not self.stop_requested.is_set():
            log.info("daemon_signal", signal=signame)
            self.stop_requested.set()

    def _spawn(self, func: Any, *args: Any) -> None:
        task = asyncio.get_running_loop().create_task(func(*args))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def reload(self) -> bool:
        """Re-read and validate the configuration; swap it in, or keep the old one."""
        async with self._reload_lock:
            self.notifier.reloading()
            try:
                new = load_settings(self.env_file) if self.env_file else load_settings()
            except ConfigError as err:
                log.error(
                    "config_reload_rejected", error=str(err), kept="the running configuration"
                )
                self.notifier.ready(
                    f"reload rejected ({err}); running on the previous configuration"
                )
                return False
            old = self.settings
            kept = [name for name in RESTART_ONLY if getattr(new, name) != getattr(old, name)]
            if kept:
                new = new.model_copy(update={name: getattr(old, name) for name in kept})
                log.warning("config_change_needs_restart", settings=kept)
            changed = changed_settings(old, new)
            if self.ctx is not None:
                self.ctx.reconfigure(new)  # the daemon's, the runs' and the API's
            else:
                self._settings_at_start = new
            if self.alerts is not None:
                self.alerts.update_settings(new)
            if self.webhooks is not None:
                self.webhooks.update_settings(new)
            elif new.webhook_secret is not None:  # the receiver and worker start with the daemon
                log.warning("config_change_needs_restart", settings=["webhook_secret"])
            if self.schedule is not None:
                self.schedule.reschedule(new)
            log.info("config_reloaded", changed=changed, regions=list(new.enabled_regions),
                     next_runs=self._next_runs())  # fmt: skip
            self.notifier.ready(self._status())
            return True

    # --- jobs --------------------------------------------------------------------
    async def run_batch_now(self) -> None:
        log.info("batch_requested", kind="hourly", by="SIGUSR1")
        await self.scheduled_batch("hourly", trigger="signal")

    async def scheduled_batch(self, kind: str, trigger: str = "schedule") -> list[RunResult]:
        """One batch over every enabled region: hourly (incremental) or daily (full).

        The jobs (``schedule.py``, APScheduler 3): the hourly batch (hourly entities of every
        enabled region, incremental), the daily batch (daily entities, plus a full refresh of the
        hourly ones), the watchdog sweep (every minute) and retention (daily). Jobs coalesce, never
        overlap themselves, and have a misfire grace time. A batch fans regions out under a
        semaphore, and runs only where it holds its kind's lock (``claim_batch``).
        """
        task = asyncio.current_task()
        assert task is not None and self.ctx is not None
        self._batches.add(task)
        try:
            return await self._batch(kind, trigger)
        finally:
            self._batches.discard(task)

    async def _batch(self, kind: str, trigger: str) -> list[RunResult]:
        assert self.ctx is not None and self.alerts is not None
        settings = self.settings
        regions = list(settings.enabled_regions)
        if kind == "hourly":
            entities, mode = list(settings.hourly_entities), RequestMode.INCREMENTAL
        else:
            entities = list(settings.daily_entities)
            if settings.daily_full_refresh:
                entities += [e for e in settings.hourly_entities if e not in entities]
            mode = RequestMode.FULL
        started = datetime.now(UTC)
        async with claim_batch(settings, kind) as ours:
            if ours:
                log.info("batch_started", kind=kind, regions=len(regions), entities=entities,
                         mode=mode)  # fmt: skip
                results = await run_batch(
                    self.ctx, regions, entities, mode=mode, trigger=f"{trigger}-{kind}"
                )
            else:
                reason = f"another daemon on this database is running the {kind} batch"
                log.info("batch_skipped", kind=kind, reason=reason)
                results = [
                    RunResult(region, entity, RunStatus.SKIPPED, error=reason, mode=mode)
                    for region in regions
                    for entity in entities
                ]
        metrics.batch_finished(kind, ours)
        failures = [r for r in results if r.failed]
        seconds = (datetime.now(UTC) - started).total_seconds()
        log.info(
            "batch_finished", kind=kind, runs=len(results), failed=len(failures),
            skipped=sum(r.status is RunStatus.SKIPPED for r in results),
            duration_s=round(seconds, 1),
            records=sum(r.counts.records_processed for r in results),
            api_calls=sum(r.counts.api_calls_made for r in results),
        )  # fmt: skip
        if ours:
            await report_batch(self.alerts, BATCH_JOBS[kind], results)
        self.last_batch = (
            f"{kind} batch at {started:%H:%M} UTC: {len(results)} runs, {len(failures)} failed"
        )
        self.notifier.status(self._status())
        return results

    async def _sweep_runs(self) -> None:
        assert self.pool is not None and self.alerts is not None and self.ctx is not None
        try:
            stuck = await sweep(self.pool, self.settings, self.ctx.active_runs)
        except (DatabaseError, OSError, asyncpg.InterfaceError) as err:
            log.error("watchdog_sweep_failed", error=describe(err))
            return
        metrics.runs_reaped(stuck)
        if stuck:
            await self.alerts.stuck_runs(stuck)

    async def _retention(self) -> None:
        assert self.pool is not None
        age = timedelta(days=self.settings.sync_log_retention_days)
        try:
            await purge(self.pool, age)
        except (DatabaseError, OSError, asyncpg.InterfaceError) as err:
            log.error("retention_failed", error=describe(err))

    # --- status ------------------------------------------------------------------
    def _next_runs(self) -> dict[str, str]:
        return self.schedule.next_batches() if self.schedule is not None else {}

    def _status(self) -> str:
        nexts = self._next_runs()
        upcoming = ", ".join(f"next {kind} {when}" for kind, when in sorted(nexts.items()))
        return f"{len(self.settings.enabled_regions)} regions; {upcoming}; last: {self.last_batch}"


def changed_settings(old: Settings, new: Settings) -> list[str]:
    """Names of the settings that differ (values never shown: some are secrets)."""
    before, after = old.model_dump(), new.model_dump()
    names = []
    for name in sorted(set(before) | set(after)):
        if before.get(name) == after.get(name):
            continue
        if name == "regions":
            old_regions, new_regions = before.get(name) or {}, after.get(name) or {}
            for region in sorted(set(old_regions) | set(new_regions)):
                if region not in old_regions:
                    names.append(f"regions.{region} (added)")
                elif region not in new_regions:
                    names.append(f"regions.{region} (removed)")
                elif _region_values(old, region) != _region_values(new, region):
                    names.append(f"regions.{region}")
        else:
            names.append(name)
    return names


def _region_values(settings: Settings, region: str) -> tuple[Any, ...]:
    config = settings.regions[region]
    return (
        config.client_id,
        config.client_secret.get_secret_value(),
        config.company_id,
        config.enabled,
    )


async def serve(settings: Settings, env_file: Path | None) -> int:
    """Run the daemon until SIGTERM/SIGINT; the exit code for the process."""
    # Before the first connection: without it the heap grows batch after batch (memory.py).
    log.info("malloc_mmap_threshold", outcome=fix_mmap_threshold())
    return await Daemon(settings, env_file=env_file).run()
