"""The sync engine: one run of one region and entity, and a region's pipeline of runs.

``EntitySync`` is one run. It takes the pair's advisory lock (or skips, saying
so), writes a ``running`` row to ``etl_sync_log`` and keeps its heartbeat
fresh, streams pages from the API into the loader in batches (one transaction
each, so memory stays bounded whatever the listing's size), and finishes the
row as ``success`` or ``failed`` with its counts. How it lists comes from the
entity's spec:

- full listings (properties, people, supplies, tags): after a complete listing,
  records of the region missing from it get ``deleted_at``;
- incremental by update time (reservations): ``updated_at_ge=<cursor>``; the first
  run, or ``--full``, lists by the backfill window instead;
- per property by a date range (tasks): ``updated_at=<cursor date - 1 day>,<tomorrow>``
  for every property of the region, concurrently under the credential's pacer;
  ``--full`` lists everything, then confirms each missing task with
  ``GET /task/{id}`` before marking it deleted.

The cursor is the run's start time (the database's clock) minus an overlap, and
is stored only after everything it covers is committed. A run that could not
fetch everything ends ``failed`` naming what is missing, keeps what it stored,
and leaves the cursor where it was.

``RegionPipeline`` runs a region's entities: properties, then reservations,
then tasks; people, supplies and tags beside them. A failed parent stops its
dependants in that region, recorded as failed "skipped: properties failed".
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import asyncpg
import structlog

from breezeway_daemon.api.client import (
    BreezewayApi,
    BreezewayClient,
    CallCounter,
    ListingStats,
    count_calls,
)
from breezeway_daemon.config import Settings
from breezeway_daemon.db import runs
from breezeway_daemon.db.loader import Loader, LoadResult
from breezeway_daemon.db.pool import DatabaseUnavailable, connect, open_pool
from breezeway_daemon.entities import ENTITIES, EntitySpec, SyncMode, in_dependency_order
from breezeway_daemon.errors import ErrorKind, connection_lost, describe, kind_of

log = structlog.get_logger(__name__)

MAX_DELETION_CHECKS = 1000
LISTING_PASSES = 2


class RunInterrupted(Exception):
    """The process is stopping; the run ends after the batch it was storing."""


class IncompleteSync(Exception):
    """Some part of the listing could not be fetched; the message says which."""

    kind = ErrorKind.API


@dataclass(frozen=True)
class SyncRequest:
    """What to run: ``mode`` is ``incremental``, ``full`` or ``resync``."""

    region: str
    entity: str
    mode: str = "incremental"
    trigger: str = "manual"
    since: date | None = None
    until: date | None = None


@dataclass
class RunResult:
    region: str
    entity: str
    status: str  # success, failed, skipped
    run_id: int | None = None
    counts: runs.RunCounts = field(default_factory=runs.RunCounts)
    error: str | None = None
    error_kind: ErrorKind | None = None
    duration_s: float = 0.0
    mode: str = "incremental"
    listing_size: int | None = None

    @property
    def failed(self) -> bool:
        return self.status == "failed"


@dataclass
class SyncContext:
    """What runs share: settings, the pool, the API, and an optional progress callback."""

    settings: Settings
    pool: asyncpg.Pool
    api: BreezewayApi
    on_progress: Callable[[str, str, runs.RunCounts], None] | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    """Set on shutdown: runs stop after the batch transaction they are in."""
    active_runs: dict[int, EntitySync] = field(default_factory=dict)
    """Runs of this process by run id (the watchdog cancels over-time ones)."""
    unrecorded_ends: dict[tuple[str, str], tuple[int, runs.RunCounts, str]] = field(
        default_factory=dict
    )
    """Runs that ended while the database was unreachable, by (region, entity): their
    run id, counts and error, written by the pair's next run before it starts."""

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


class EntitySync:
    """One run of one region and entity."""

    def __init__(self, ctx: SyncContext, request: SyncRequest) -> None:
        self.ctx = ctx
        self.request = request
        self.spec: EntitySpec = ENTITIES[request.entity]
        self.region = request.region
        self.counts = runs.RunCounts()
        self.calls = CallCounter()
        self.client: BreezewayClient = ctx.api.client(request.region)
        self.run_id: int | None = None
        self.started_at: datetime | None = None
        self.listing_size: int | None = None
        self._task: asyncio.Task[Any] | None = None

    async def run(self) -> RunResult:
        """Run once; never raises for a sync failure (the result says it), only on cancel."""
        started = self._began = asyncio.get_running_loop().time()
        result = RunResult(self.region, self.spec.name, "failed", mode=self.request.mode)
        try:
            lock_conn = await connect(self.ctx.settings, application_name="breezeway-daemon run")
        except DatabaseUnavailable as err:
            result.error = f"the database is unreachable: {describe(err)}"
            result.error_kind = ErrorKind.DATABASE
            log.error("run_failed", region=self.region, entity=self.spec.name, error=result.error)
            return result
        try:
            try:
                if not await self._start(lock_conn, result):
                    return result
            except Exception as err:  # noqa: BLE001 - a run never raises for a failure
                result.error, result.error_kind = describe_failure(err), ErrorKind.DATABASE
                log.error(
                    "run_failed", region=self.region, entity=self.spec.name, error=result.error
                )
                return result
            with structlog.contextvars.bound_contextvars(
                region=self.region, entity=self.spec.name, run_id=self.run_id
            ):
                await self._run_locked(lock_conn, result)
        finally:
            result.duration_s = asyncio.get_running_loop().time() - started
            result.counts = self.counts
            result.listing_size = self.listing_size
            with contextlib.suppress(Exception):
                await asyncio.shield(self._close_lock(lock_conn))
        return result

    async def _start(self, lock_conn: asyncpg.Connection, result: RunResult) -> bool:
        """Take the pair's lock and write the run's row; False (and said) when another holds it."""
        if not await runs.try_lock_pair(lock_conn, self.region, self.spec.name):
            reason = "another process is syncing this region and entity"
            log.info("run_skipped", region=self.region, entity=self.spec.name, reason=reason)
            result.status, result.error = "skipped", reason
            return False
        await self._record_unrecorded_end(lock_conn)
        reaped = await runs.reap_abandoned(lock_conn, self.region, self.spec.name)
        if reaped:
            log.warning(
                "abandoned_runs_failed", region=self.region, entity=self.spec.name, count=reaped
            )
        self.run_id, self.started_at = await runs.start_run(
            lock_conn,
            self.region,
            self.spec.name,
            mode=self.request.mode,
            trigger=self.request.trigger,
        )
        result.run_id = self.run_id
        return True

    async def _record_unrecorded_end(self, lock_conn: asyncpg.Connection) -> None:
        """A previous run of this pair in this process ended while the database was
        unreachable: its row says why now, rather than being reaped as abandoned."""
        pending = self.ctx.unrecorded_ends.pop((self.region, self.spec.name), None)
        if pending is not None:
            run_id, counts, error = pending
            await runs.finish_run(lock_conn, run_id, success=False, counts=counts, error=error)

    async def _close_lock(self, lock_conn: asyncpg.Connection) -> None:
        with contextlib.suppress(Exception):
            await runs.unlock_pair(lock_conn, self.region, self.spec.name)
        await lock_conn.close(timeout=5)

    async def _run_locked(self, lock_conn: asyncpg.Connection, result: RunResult) -> None:
        log.info("run_started", mode=self.request.mode, trigger=self.request.trigger)
        self._task = asyncio.current_task()
        self._lock_conn = lock_conn
        assert self.run_id is not None
        self.ctx.active_runs[self.run_id] = self
        beat = asyncio.create_task(self._heartbeat(lock_conn, self._task))
        try:
            await self._run_and_finish(beat, result)
        finally:
            self.ctx.active_runs.pop(self.run_id, None)

    async def _run_and_finish(self, beat: asyncio.Task[Any], result: RunResult) -> None:
        try:
            with count_calls(self.calls):
                async with asyncio.timeout(self.ctx.settings.max_run_minutes * 60):
                    cursor_to = await self._sync()
        except asyncio.CancelledError:
            await _stop(beat)
            await self._finish(result, success=False, error=self.cancel_reason)
            if self._cancelled_by_run and self._task is not None and self._task.uncancel() == 0:
                return  # the watchdog or the lost lock ended this run; the batch goes on
            raise
        except Exception as err:  # noqa: BLE001 - every failure ends the run, explained
            await _stop(beat)
            if isinstance(err, asyncio.TimeoutError):
                minutes = self.ctx.settings.max_run_minutes
                error = f"exceeded the maximum run time of {minutes:g} minutes"
            else:
                error = describe_failure(err)
            result.error_kind = kind_of(err)
            log.error("run_failed", error=error, kind=result.error_kind.value, **self._log_counts())
            await self._finish(result, success=False, error=error)
            return
        await _stop(beat)
        await self._finish(result, success=True, cursor_to=cursor_to)

    _began = 0.0
    _lock_conn: asyncpg.Connection | None = None
    cancel_reason = "interrupted by shutdown"
    """What a cancelled run's row says; whoever cancels a run for another reason sets it first."""

    async def _finish(
        self,
        result: RunResult,
        *,
        success: bool,
        error: str | None = None,
        cursor_to: datetime | None = None,
    ) -> None:
        assert self.run_id is not None
        self.counts.api_calls_made = self.calls.calls
        if success:
            # Over the connection that holds the run lock: a run that lost its lock (another
            # process may have taken the pair over) must not record a success.
            try:
                async with asyncio.timeout(30):
                    await self._record_end(self._lock_conn, True, None, cursor_to)
            except Exception as err:  # noqa: BLE001 - whatever it was, the success is not recorded
                success = False
                error = (
                    f"lost the database connection that holds the run lock: {describe(err)}"
                    if connection_lost(err)
                    else f"could not record the run's end: {describe(err)}"
                )
                result.error_kind = ErrorKind.DATABASE
                log.error("run_finish_not_recorded", error=describe(err))
        if not success:
            assert error is not None
            error = await self._record_failure(result, error)
        result.status = "success" if success else "failed"
        result.error = error
        if success:
            duration = asyncio.get_running_loop().time() - self._began
            log.info("run_succeeded", duration_s=round(duration, 2), **self._log_counts())

    async def _record_failure(self, result: RunResult, error: str) -> str:
        """Write the failed run's row; returns the run's error (saying so when it could not).

        Right after the database dropped connections, the pool's idle ones may be dead,
        or still reading the server's goodbye ("another operation is in progress"): a
        connection that fails here is terminated, so that the pool hands out another
        one or opens a new one, and the end is written again; as many times as the pool
        has connections, within 30 s. A failure to connect at all ends the attempts.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        attempts = self.ctx.settings.db_pool_size + 1
        for attempt in range(1, attempts + 1):
            try:
                async with asyncio.timeout(max(deadline - loop.time(), 0.1)):
                    async with self.ctx.pool.acquire() as conn:
                        try:
                            await self._record_end(conn, False, error, None)
                        except Exception:
                            # Not handed out again, whatever its state (a connection the
                            # pool already detached, being lost, needs nothing more).
                            with contextlib.suppress(asyncpg.InterfaceError):
                                conn.terminate()
                            raise
                return error
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
                result.error_kind = ErrorKind.DATABASE
                # The pair's next run in this process writes it (else the watchdog fails it).
                self.ctx.unrecorded_ends[(self.region, self.spec.name)] = (
                    self.run_id or 0, dataclasses.replace(self.counts), error
                )  # fmt: skip
                log.error("run_finish_not_recorded", error=describe(err))
        return error

    async def _record_end(
        self,
        conn: asyncpg.Connection | None,
        success: bool,
        error: str | None,
        cursor_to: datetime | None,
    ) -> None:
        if conn is None or conn.is_closed():
            raise asyncpg.InterfaceError("connection is closed")
        assert self.run_id is not None
        async with conn.transaction():
            if success and cursor_to is not None:
                await runs.write_cursor(conn, self.region, self.spec.name, cursor_to, self.run_id)
            await runs.finish_run(
                conn, self.run_id, success=success, counts=self.counts, error=error,
                cursor_from=self._cursor_from, cursor_to=cursor_to,
            )  # fmt: skip

    def _log_counts(self) -> dict[str, int]:
        return {
            "records": self.counts.records_processed,
            "new": self.counts.records_new,
            "updated": self.counts.records_updated,
            "deleted": self.counts.records_deleted,
            "rejected": self.counts.records_rejected,
            "api_calls": self.calls.calls,
        }

    async def _heartbeat(
        self, lock_conn: asyncpg.Connection, run_task: asyncio.Task[Any] | None
    ) -> None:
        """Keep the row's heartbeat fresh; losing the lock's connection cancels the run."""
        while True:
            await asyncio.sleep(self.ctx.settings.heartbeat_s)
            self.counts.api_calls_made = self.calls.calls
            try:
                # Not wait_for: on Python 3.11 it swallows a cancellation that arrives just
                # as the statement completes, and the heartbeat would then never stop.
                async with asyncio.timeout(30):
                    await runs.heartbeat(lock_conn, self.run_id or 0, self.counts)
            except Exception as err:  # noqa: BLE001 - whatever it is, the lock is not proven held
                log.error("run_lock_lost", error=describe(err))
                self.cancel(
                    f"lost the database connection that holds the run lock: {describe(err)}"
                )
                return

    # --- the sync itself -------------------------------------------------------
    _cursor_from: datetime | None = None

    async def _sync(self) -> datetime | None:
        """Fetch and store; returns the new cursor (or None when the cursor must not move)."""
        mode = self.spec.mode
        if self.request.mode == "resync":
            await self._resync()
            return None
        if mode is SyncMode.FULL:
            await self._full_listing()
            return None
        assert self.started_at is not None
        new_cursor = self.started_at - timedelta(minutes=self.ctx.settings.cursor_overlap_minutes)
        self._cursor_from = (
            None
            if self.request.mode == "full"
            else await runs.read_cursor(self.ctx.pool, self.region, self.spec.name)
        )
        if mode is SyncMode.UPDATED_SINCE:
            await self._updated_since()
        else:
            await self._per_property()
        return new_cursor

    def _loader(self) -> Loader:
        return Loader(self.ctx.pool, self.spec, self.region, self.run_id)

    def _count(self, loaded: LoadResult, *, received: bool = True) -> None:
        """Add a batch's outcome to the run's counts (``received=False``: a retry of
        records already counted as received)."""
        if received:
            self.counts.records_processed += loaded.received
        self.counts.records_new += loaded.new
        self.counts.records_updated += loaded.updated
        self.counts.records_unchanged += loaded.unchanged
        self.counts.records_rejected += loaded.rejected
        if self.ctx.on_progress is not None:
            self.counts.api_calls_made = self.calls.calls
            self.ctx.on_progress(self.region, self.spec.name, self.counts)

    async def _store(
        self,
        pages: AsyncIterator[list[dict[str, Any]]],
        *,
        key_values: dict[str, Any] | None = None,
        orphans: Literal["reject", "return"] = "reject",
    ) -> list[dict[str, Any]]:
        """Store a stream of pages in batches; returns the orphans when asked to.

        ``batches_in_flight`` batches are written at once (the loader's pipeline),
        so the next pages are fetched and prepared while PostgreSQL writes.
        """
        size = self.ctx.settings.batch_size
        kept_orphans: list[dict[str, Any]] = []

        def on_result(loaded: LoadResult) -> None:
            kept_orphans.extend(loaded.orphans)  # type: ignore[arg-type]
            self._count(loaded)

        batch: list[dict[str, Any]] = []
        pipeline = self._loader().pipeline(
            concurrency=self.ctx.settings.batches_in_flight,
            key_values=key_values,
            orphans=orphans,
            on_result=on_result,
        )
        async with pipeline:
            async for records in pages:
                batch.extend(records)
                if len(batch) >= size:
                    await pipeline.submit(batch)
                    batch = []
                    self._stop_if_requested()
            if batch:
                await pipeline.submit(batch)
        return kept_orphans

    def _stop_if_requested(self) -> None:
        """Between batch transactions: end the run if the process is stopping."""
        if self.ctx.stopping.is_set():
            raise RunInterrupted(self.cancel_reason)

    _cancelled_by_run = False

    def cancel(self, reason: str) -> None:
        """End this run from another task (watchdog, lost lock); its row records ``reason``."""
        self.cancel_reason = reason
        if self._task is not None and not self._task.done():
            self._cancelled_by_run = True
            self._task.cancel()

    async def _full_listing(self) -> None:
        """List everything; after a complete listing, mark what is missing deleted."""
        for attempt in range(1, LISTING_PASSES + 1):
            shifted = False
            total = 0
            for endpoint in self.spec.endpoints:
                stats = ListingStats()
                key_values = {"tag_type": endpoint.tag_type} if endpoint.tag_type else None
                await self._store(self.client.pages(endpoint, {}, stats), key_values=key_values)
                shifted = shifted or stats.shifted
                total += stats.records
            self.listing_size = total
            if not shifted:
                self.counts.records_deleted += await self._mark_missing_deleted()
                return
            log.warning("listing_shifted", attempt=attempt,
                        detail="records changed while paging; listing again before marking deletions")  # fmt: skip
        log.warning("deletions_not_marked", reason="the listing kept shifting while it was paged")

    async def _mark_missing_deleted(self, extra_where: str = "", *args: Any) -> int:
        status = await self.ctx.pool.execute(
            f"""
            UPDATE breezeway.{self.spec.table} SET deleted_at = now()
            WHERE region_code = $1 AND deleted_at IS NULL AND synced_at < $2 {extra_where}
            """,
            self.region,
            self.started_at,
            *args,
        )
        deleted = int(status.split()[-1])
        if deleted:
            log.info("records_marked_deleted", count=deleted)
        return deleted

    async def _updated_since(self) -> None:
        """Reservations: by update time since the cursor, else by the backfill window."""
        spec = self.spec
        assert spec.incremental is not None and spec.backfill is not None
        since: date | None = None
        if self._cursor_from is None:
            since = datetime.now(UTC).date() - timedelta(
                days=self.ctx.settings.reservation_backfill_days
            )
            params = {spec.backfill.param: since.isoformat()}
        else:
            params = {spec.incremental.param: _api_datetime(self._cursor_from)}
        stats = ListingStats()
        orphans = await self._store(
            self.client.pages(spec.endpoints[0], params, stats), orphans="return"
        )
        if orphans:
            await self._retry_orphans(orphans)
        if since is None or spec.backfill.column is None:
            return
        # A complete backfill listing is a full listing of its window: what is missing is gone.
        self.listing_size = stats.records
        if stats.shifted:
            log.warning("deletions_not_marked", reason="the listing shifted while it was paged")
            return
        self.counts.records_deleted += await self._mark_missing_deleted(
            f"AND {spec.backfill.column} >= $3", since
        )

    async def _retry_orphans(self, orphans: list[dict[str, Any]]) -> None:
        """Records whose parent is unknown: sync the parent entity once, then try again."""
        parent = self.spec.parent_ref.entity if self.spec.parent_ref else None
        log.info("orphans_found", count=len(orphans), parent=parent)
        if parent is not None:
            request = SyncRequest(
                self.region, parent, "full", trigger=f"parent-of-{self.spec.name}"
            )
            parent_result = await EntitySync(self.ctx, request).run()
            log.info("parent_synced_for_orphans", parent=parent, status=parent_result.status)
            if parent_result.status != "success":
                # Rejecting them now would lose them: the cursor would move past them.
                why = (
                    "is being synced by another process"
                    if parent_result.status == "skipped"
                    else f"failed ({parent_result.error})"
                )
                raise IncompleteSync(
                    f"{len(orphans)} {self.spec.name} name {parent} records not stored yet and "
                    f"the {parent} run {why}; the cursor stays, so the next run stores them"
                )
        loaded = await self._loader().load(orphans, orphans="reject")
        self._count(loaded, received=False)

    async def _property_ids(self) -> list[int]:
        rows = await self.ctx.pool.fetch(
            "SELECT id FROM breezeway.properties WHERE region_code = $1 AND deleted_at IS NULL ORDER BY id",
            self.region,
        )
        return [row["id"] for row in rows]

    def _task_window(self) -> dict[str, str]:
        spec = self.spec
        assert spec.incremental is not None
        if self._cursor_from is None:
            return {}
        start = self._cursor_from.date() - timedelta(days=spec.incremental.overlap_days)
        # Tomorrow: the API may count days in the company's time zone, ahead of UTC.
        end = datetime.now(UTC).date() + timedelta(days=1)
        return {spec.incremental.param: f"{start.isoformat()},{end.isoformat()}"}

    async def _per_property(self, window: dict[str, str] | None = None) -> None:
        """Tasks: one listing per property, concurrently; failures named, the rest stored."""
        window = self._task_window() if window is None else window
        property_ids = await self._property_ids()
        failures: dict[int, str] = {}
        queue: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue(maxsize=16)
        limit = asyncio.Semaphore(self.ctx.settings.task_fetch_concurrency)
        endpoint = self.spec.endpoints[0]
        param = self.spec.per_parent_param or "home_id"

        async def fetch(property_id: int) -> None:
            async with limit:
                try:
                    async for records in self.client.pages(
                        endpoint, {param: property_id, **window}
                    ):
                        await queue.put(records)
                except Exception as err:  # noqa: BLE001 - named in the run's error
                    failures[property_id] = describe(err)
                    log.warning(
                        "property_tasks_failed", property_id=property_id, error=describe(err)
                    )

        async def fetch_all() -> None:
            try:
                await asyncio.gather(*(fetch(pid) for pid in property_ids))
            finally:
                await queue.put(None)

        async def drain() -> AsyncIterator[list[dict[str, Any]]]:
            while (records := await queue.get()) is not None:
                yield records

        producer = asyncio.create_task(fetch_all())
        try:
            await self._store(drain())
        finally:
            if not producer.done():
                producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer
        if failures:
            first = next(iter(failures.items()))
            shown = ", ".join(str(pid) for pid in list(failures)[:20])
            more = f" and {len(failures) - 20} more" if len(failures) > 20 else ""
            raise IncompleteSync(
                f"tasks of {len(failures)} of {len(property_ids)} properties could not be fetched "
                f"(property ids {shown}{more}); first error: property {first[0]}: {first[1]}"
            )
        if not window and self.request.mode != "resync":
            self.counts.records_deleted += await self._confirm_and_mark_deleted_tasks()

    async def _confirm_and_mark_deleted_tasks(self) -> int:
        """After a complete full task listing: a missing task is deleted only if the API says 404."""
        candidates = await self.ctx.pool.fetch(
            f"""
            SELECT t.id, p.deleted_at IS NOT NULL AS property_gone
            FROM breezeway.{self.spec.table} t
            JOIN breezeway.properties p ON p.region_code = t.region_code AND p.id = t.property_id
            WHERE t.region_code = $1 AND t.deleted_at IS NULL AND t.synced_at < $2
            ORDER BY t.id LIMIT {MAX_DELETION_CHECKS + 1}
            """,
            self.region,
            self.started_at,
        )
        if len(candidates) > MAX_DELETION_CHECKS:
            log.warning("deletion_checks_capped", limit=MAX_DELETION_CHECKS,
                        detail="the rest are checked by the next full run")  # fmt: skip
            candidates = candidates[:MAX_DELETION_CHECKS]
        gone: list[int] = []
        still_there: list[dict[str, Any]] = []
        for row in candidates:
            if row["property_gone"]:
                gone.append(row["id"])
                continue
            record = await self.client.task(row["id"])
            if record is None:
                gone.append(row["id"])
            else:
                still_there.append(record)
        if still_there:
            self._count(await self._loader().load(still_there))
        if not gone:
            return 0
        status = await self.ctx.pool.execute(
            f"UPDATE breezeway.{self.spec.table} SET deleted_at = now() "
            "WHERE region_code = $1 AND id = ANY($2::bigint[]) AND deleted_at IS NULL",
            self.region,
            gone,
        )
        return int(status.split()[-1])

    async def _resync(self) -> None:
        """Re-fetch a date window (reservations: stays overlapping it; tasks: scheduled in it)."""
        since = self.request.since
        until = self.request.until or datetime.now(UTC).date()
        assert since is not None
        if self.spec.name == "reservations":
            params = {"checkout_date_ge": since.isoformat(), "checkin_date_le": until.isoformat()}
            orphans = await self._store(
                self.client.pages(self.spec.endpoints[0], params), orphans="return"
            )
            if orphans:
                await self._retry_orphans(orphans)
        elif self.spec.name == "tasks":
            await self._per_property({"scheduled_date": f"{since.isoformat()},{until.isoformat()}"})
        else:
            raise ValueError(f"resync is for reservations and tasks, not {self.spec.name}")


def describe_failure(err: BaseException) -> str:
    """A run's error message; a lost database connection is said to be one."""
    text = describe(err)
    return f"lost the database connection: {text}" if connection_lost(err) else text


def _api_datetime(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


async def _stop(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for it; cancelled again should it swallow a cancellation."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()


# --- pipelines and batches -----------------------------------------------------------
CHAIN_ROOT = "properties"


class RegionPipeline:
    """A region's runs: the properties chain in order, the independent entities beside it."""

    def __init__(self, ctx: SyncContext, region: str, entities: list[str] | tuple[str, ...], *,
                 mode: str = "incremental", trigger: str = "manual") -> None:  # fmt: skip
        self.ctx = ctx
        self.region = region
        self.entities = in_dependency_order(list(entities))
        self.mode = mode
        self.trigger = trigger

    async def run(self) -> list[RunResult]:
        chain = [name for name in self.entities if name == CHAIN_ROOT or ENTITIES[name].parents]
        side = [name for name in self.entities if name not in chain]
        chain_results, side_results = await asyncio.gather(
            self._in_order(chain), self._in_order(side)
        )
        order = {name: index for index, name in enumerate(self.entities)}
        return sorted(chain_results + side_results, key=lambda result: order[result.entity])

    async def _in_order(self, names: list[str]) -> list[RunResult]:
        results: list[RunResult] = []
        failed: set[str] = set()
        for name in names:
            broken = [parent for parent in ENTITIES[name].parents if parent in failed]
            if broken:
                reason = f"skipped: {broken[0]} failed"
                run_id = await self._record_skipped(name, reason)
                log.warning(
                    "run_not_started", region=self.region, entity=name, reason=reason, run_id=run_id
                )
                results.append(RunResult(self.region, name, "failed", run_id, error=reason,
                                         error_kind=ErrorKind.OTHER, mode=self.mode))  # fmt: skip
                failed.add(name)
                continue
            result = await EntitySync(
                self.ctx, SyncRequest(self.region, name, self.mode, self.trigger)
            ).run()
            results.append(result)
            if result.failed:
                failed.add(name)
        return results

    async def _record_skipped(self, name: str, reason: str) -> int | None:
        """The skipped run's row, or None when the database cannot take it (an outage
        fails the parent first): the batch goes on and reports it either way."""
        try:
            async with asyncio.timeout(30):
                return await runs.record_skipped_run(
                    self.ctx.pool, self.region, name, trigger=self.trigger, reason=reason
                )
        except Exception as err:  # noqa: BLE001 - one region's bookkeeping never stops a batch
            log.error("run_not_recorded", region=self.region, entity=name, error=describe(err))
            return None


async def run_batch(
    ctx: SyncContext,
    regions: list[str],
    entities: list[str] | tuple[str, ...],
    *,
    mode: str = "incremental",
    trigger: str = "manual",
) -> list[RunResult]:
    """Every region's pipeline, at most ``region_concurrency`` at once."""
    limit = asyncio.Semaphore(ctx.settings.region_concurrency)

    async def one(region: str) -> list[RunResult]:
        async with limit:
            return await RegionPipeline(ctx, region, entities, mode=mode, trigger=trigger).run()

    per_region = await asyncio.gather(*(one(region) for region in regions))
    return [result for results in per_region for result in results]
