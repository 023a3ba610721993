"""A run's lease on its region and entity: from the lock to the final row.

``async with RunLease(...)`` connects, takes the pair's advisory lock, writes the
``running`` row and keeps its heartbeat fresh while the body (the listing) runs;
on leaving it writes the final row and releases the lock. The body is the
listing alone: how a run's end is recorded, retried, or kept for later when the
database cannot take it, and how a run is cancelled, all live here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, NoReturn, Protocol

import asyncpg
import structlog

from breezeway_daemon import metrics
from breezeway_daemon.config import Settings
from breezeway_daemon.db import runs
from breezeway_daemon.db.pool import DatabaseUnavailable, connect
from breezeway_daemon.db.runs import RequestMode, RunCounts, RunStatus
from breezeway_daemon.errors import DatabaseError, ErrorKind, connection_lost, describe, kind_of

log = structlog.get_logger(__name__)

ABANDONED = f"abandoned: its process ({runs.OWNER}) stopped without finishing the run"
SHUTDOWN = "interrupted by shutdown"
LOST_LOCK = "lost the database connection that holds the run lock"
END_TIMEOUT_S = 30


class UnrecordedEnd(NamedTuple):
    """A run that ended while the database was unreachable: what its row must say."""

    run_id: int
    counts: RunCounts
    error: str


class RunOwner(Protocol):
    """What a lease needs of the process that runs it (``sync.SyncContext``)."""

    settings: Settings
    pool: asyncpg.Pool
    active_runs: dict[int, RunLease]
    """Leases held now, by run id: the watchdog cancels over-time runs through them."""
    unrecorded_ends: dict[tuple[str, str], UnrecordedEnd]
    """By (region, entity): written by the pair's next lease before its run starts."""


@dataclass
class RunEnd:
    """How a run ended. ``error_kind`` None: the run's own error carries no kind (a
    cancellation)."""

    status: RunStatus
    error: str | None = None
    error_kind: ErrorKind | None = None


class RunNotStarted(Exception):
    """The lease was not taken (the pair is busy, or the database unreachable); its
    ``end`` says so."""


class RunLease:
    """One run's lock, ``running`` row, heartbeat and end; an async context manager.

    Entering raises ``RunNotStarted`` when the run cannot start. The body runs at
    most ``max_run_minutes``. Leaving records ``success`` (and ``cursor_to``) when
    the body returned, else ``failed`` with the body's error, and swallows that
    error: ``end`` says it. A cancellation is recorded and goes on, unless the lease
    cancelled the run itself (``cancel``: the watchdog, a lost lock).
    """

    def __init__(
        self,
        owner: RunOwner,
        region: str,
        entity: str,
        *,
        mode: RequestMode,
        trigger: str,
        counts: Callable[[], RunCounts],
    ) -> None:
        """``counts`` gives the run's counts as they are now (heartbeat, final row)."""
        self.owner = owner
        self.region = region
        self.entity = entity
        self.mode = mode
        self.trigger = trigger
        self.counts = counts
        self.run_id: int | None = None
        self.started_at: datetime | None = None
        """The run's start by the database's clock."""
        self.cursor_from: datetime | None = None
        self.cursor_to: datetime | None = None
        """Set by the body: the cursor a success stores (None: the cursor stays)."""
        self.end = RunEnd(RunStatus.FAILED)
        self.cancel_reason = SHUTDOWN
        """What a cancelled run's row says; ``cancel`` sets it."""
        self.cancel_kind: ErrorKind | None = None
        """The cancelled run's error kind, where one applies (a lost lock: the database)."""
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[Any] | None = None
        self._cancelled_here = False
        self._began = 0.0
        self._held: contextlib.AbstractAsyncContextManager[RunLease] | None = None

    async def __aenter__(self) -> RunLease:
        self._held = self._hold()
        return await self._held.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        assert self._held is not None
        return await self._held.__aexit__(*exc_info)

    @property
    def session_pid(self) -> int | None:
        """The database session holding the pair's lock (its backend pid), while held."""
        conn = self._conn
        return conn.get_server_pid() if conn is not None and not conn.is_closed() else None

    def cancel(self, reason: str, kind: ErrorKind | None = None) -> None:
        """End the run from another task; its row records ``reason`` (and its result ``kind``)."""
        self.cancel_reason = reason
        self.cancel_kind = kind
        if self._task is not None and not self._task.done():
            self._cancelled_here = True
            self._task.cancel()

    # --- lock and row ------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _hold(self) -> AsyncIterator[RunLease]:
        self._began = asyncio.get_running_loop().time()
        try:
            self._conn = await connect(self.owner.settings, application_name="breezeway-daemon run")
        except DatabaseUnavailable as err:
            self._not_started(f"the database is unreachable: {describe(err)}")
        try:
            try:
                started = await self._start(self._conn)
            except Exception as err:  # noqa: BLE001 - a run never raises for a failure
                self._not_started(describe_failure(err))
            if not started:
                reason = "another process is syncing this region and entity"
                log.info("run_skipped", region=self.region, entity=self.entity, reason=reason)
                self.end = RunEnd(RunStatus.SKIPPED, reason)
                raise RunNotStarted(reason)
            with structlog.contextvars.bound_contextvars(
                region=self.region, entity=self.entity, run_id=self.run_id
            ):
                async with self._running():
                    yield self
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._release(self._conn))

    def _not_started(self, error: str) -> NoReturn:
        log.error("run_failed", region=self.region, entity=self.entity, error=error)
        self.end = RunEnd(RunStatus.FAILED, error, ErrorKind.DATABASE)
        raise RunNotStarted(error)

    async def _start(self, conn: asyncpg.Connection) -> bool:
        """Take the pair's lock and write the run's row; False when another holds it."""
        if not await runs.try_lock_pair(conn, self.region, self.entity):
            return False
        pending = self.owner.unrecorded_ends.pop((self.region, self.entity), None)
        if pending is not None:
            # Said now, rather than failed as abandoned.
            await runs.finish_run(
                conn, pending.run_id, success=False, counts=pending.counts, error=pending.error
            )
        reaped = await runs.fail_running(conn, ABANDONED, region=self.region, entity=self.entity)
        if reaped:
            log.warning(
                "abandoned_runs_failed", region=self.region, entity=self.entity, count=reaped
            )
        self.run_id, self.started_at = await runs.start_run(
            conn, self.region, self.entity, mode=self.mode, trigger=self.trigger
        )
        return True

    async def _release(self, conn: asyncpg.Connection) -> None:
        with contextlib.suppress(Exception):
            await runs.unlock_pair(conn, self.region, self.entity)
        await conn.close(timeout=5)

    # --- while the run runs ------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        log.info("run_started", mode=self.mode, trigger=self.trigger)
        metrics.run_started(self.region, self.entity)
        assert self.run_id is not None
        self._task = asyncio.current_task()
        self.owner.active_runs[self.run_id] = self
        beat = asyncio.create_task(self._heartbeat())
        try:
            try:
                async with asyncio.timeout(self.owner.settings.max_run_minutes * 60):
                    yield
            except asyncio.CancelledError:
                await _stop(beat)
                await self._finish(self.cancel_reason, self.cancel_kind)
                if self._cancelled_here and self._task is not None and self._task.uncancel() == 0:
                    return  # the watchdog or the lost lock ended this run; the batch goes on
                raise
            except Exception as err:  # noqa: BLE001 - every failure ends the run, explained
                await _stop(beat)
                if isinstance(err, TimeoutError):
                    minutes = self.owner.settings.max_run_minutes
                    error = f"exceeded the maximum run time of {minutes:g} minutes"
                else:
                    error = describe_failure(err)
                kind = kind_of(err)
                log.error("run_failed", error=error, kind=kind.value, **_logged(self.counts()))
                await self._finish(error, kind)
                return
            await _stop(beat)
            await self._finish(None)
        finally:
            self.owner.active_runs.pop(self.run_id, None)

    async def _heartbeat(self) -> None:
        """Keep the row's heartbeat fresh; losing the lock's connection cancels the run."""
        while True:
            await asyncio.sleep(self.owner.settings.heartbeat_s)
            try:
                # Not wait_for: on Python 3.11 it swallows a cancellation that arrives just
                # as the statement completes, and the heartbeat would then never stop.
                async with asyncio.timeout(END_TIMEOUT_S):
                    await runs.heartbeat(self._conn, self.run_id or 0, self.counts())
            except Exception as err:  # noqa: BLE001 - whatever it is, the lock is not proven held
                log.error("run_lock_lost", error=describe(err))
                self.cancel(f"{LOST_LOCK}: {describe(err)}", ErrorKind.DATABASE)
                return

    # --- the end -----------------------------------------------------------------------
    async def _finish(self, error: str | None, kind: ErrorKind | None = None) -> None:
        """Write the run's end (``error`` None: a success) and set ``end``."""
        if error is None:
            # Over the connection that holds the run lock: a run that lost its lock (another
            # process may have taken the pair over) must not record a success.
            try:
                async with asyncio.timeout(END_TIMEOUT_S):
                    await self._write_end(self._conn, True, None, self.cursor_to)
            except Exception as err:  # noqa: BLE001 - whatever it was, the success is not recorded
                error = (
                    f"{LOST_LOCK}: {describe(err)}"
                    if connection_lost(err)
                    else f"could not record the run's end: {describe(err)}"
                )
                kind = ErrorKind.DATABASE
                log.error("run_finish_not_recorded", error=describe(err))
            else:
                self.end = RunEnd(RunStatus.SUCCESS)
                duration = asyncio.get_running_loop().time() - self._began
                log.info("run_succeeded", duration_s=round(duration, 2), **_logged(self.counts()))
                return
        self.end = RunEnd(RunStatus.FAILED, error, kind)
        await self._write_failure()

    async def _write_failure(self) -> None:
        """Write the failed run's row through the pool; ``end`` says when it could not.

        Right after the database dropped connections, the pool's idle ones may be dead,
        or still reading the server's goodbye ("another operation is in progress"): a
        connection that fails here is terminated, so that the pool hands out another
        one or opens a new one, and the end is written again; as many times as the pool
        has connections, within 30 s. A failure to connect at all ends the attempts.
        """
        error = self.end.error
        loop = asyncio.get_running_loop()
        deadline = loop.time() + END_TIMEOUT_S
        attempts = self.owner.settings.db_pool_size + 1
        for attempt in range(1, attempts + 1):
            try:
                async with asyncio.timeout(max(deadline - loop.time(), 0.1)):
                    async with self.owner.pool.acquire() as conn:
                        try:
                            await self._write_end(conn, False, error, None)
                        except Exception:
                            # Not handed out again, whatever its state (a connection the
                            # pool already detached, being lost, needs nothing more).
                            with contextlib.suppress(asyncpg.InterfaceError):
                                conn.terminate()
                            raise
                return
            except Exception as err:  # noqa: BLE001 - a run's end must never raise
                stale = connection_lost(err) and not isinstance(err, DatabaseUnavailable | OSError)
                again = stale or (attempt == 1 and not isinstance(err, TimeoutError))
                if again and attempt < attempts and loop.time() < deadline:
                    continue
                unreachable = connection_lost(err) or isinstance(err, TimeoutError)
                why = (
                    "the database is unreachable"
                    if unreachable
                    else "the run's end is not recorded"
                )
                error = f"{why} ({describe(err)}); the run failed: {error}"
                self.end = RunEnd(RunStatus.FAILED, error, ErrorKind.DATABASE)
                # The pair's next run in this process writes it (else the watchdog fails it).
                self.owner.unrecorded_ends[(self.region, self.entity)] = UnrecordedEnd(
                    self.run_id or 0, dataclasses.replace(self.counts()), error
                )
                log.error("run_finish_not_recorded", error=describe(err))
                return

    async def _write_end(
        self,
        conn: asyncpg.Connection | None,
        success: bool,
        error: str | None,
        cursor_to: datetime | None,
    ) -> None:
        """The final row (and, for a success with a cursor, the cursor) in one transaction."""
        if conn is None or conn.is_closed():
            raise DatabaseError("connection is closed", connection_lost=True)
        assert self.run_id is not None
        async with conn.transaction():
            if success and cursor_to is not None:
                await runs.write_cursor(conn, self.region, self.entity, cursor_to, self.run_id)
            await runs.finish_run(
                conn, self.run_id, success=success, counts=self.counts(), error=error,
                cursor_from=self.cursor_from, cursor_to=cursor_to,
            )  # fmt: skip


def describe_failure(err: BaseException) -> str:
    """A run's error message; a lost database connection is said to be one."""
    text = describe(err)
    return f"lost the database connection: {text}" if connection_lost(err) else text


def _logged(counts: RunCounts) -> dict[str, int]:
    return {
        "records": counts.records_processed,
        "new": counts.records_new,
        "updated": counts.records_updated,
        "deleted": counts.records_deleted,
        "rejected": counts.records_rejected,
        "items_rejected": counts.items_rejected,
        "api_calls": counts.api_calls_made,
    }


async def _stop(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for it; cancelled again should it swallow a cancellation."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
