"""How a run fetches its entity: one listing strategy per ``ListingMode`` of the specs.

``FullListing`` (properties, people, supplies, tags), ``UpdatedSince`` (reservations) and
``DateRangePerParent`` (tasks, per property under the polling plan); what each lists and
when it marks deletions: README, "How it syncs".
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from breezeway_daemon.api.client import ListingStats
from breezeway_daemon.db.runs import RunStatus
from breezeway_daemon.entities import RESYNC_ENTITIES, EntitySpec, entity
from breezeway_daemon.errors import ErrorKind, describe
from breezeway_daemon.sync.polling import plan_task_polls

if TYPE_CHECKING:
    from breezeway_daemon.sync.run import EntitySync

log = structlog.get_logger(__name__)

MAX_DELETION_CHECKS = 1000
LISTING_PASSES = 2


class IncompleteSync(Exception):
    """Some part of the listing could not be fetched; the message says which."""

    kind = ErrorKind.API


class Listing(abc.ABC):
    """How one run fetches its entity; a subclass per ``ListingMode``."""

    incremental = True
    """Whether it lists from a cursor (and the run moves the cursor)."""

    def __init__(self, run: EntitySync) -> None:
        self.run = run
        self.spec: EntitySpec = run.spec
        self.region = run.region
        self.client = run.client
        self.pool = run.ctx.pool

    @abc.abstractmethod
    async def list(self, cursor_from: datetime | None) -> None:
        """Fetch and store what changed since ``cursor_from`` (None: everything)."""

    async def list_window(self, since: date, until: date) -> None:
        """Fetch and store the records of a date window again (``resync``)."""
        raise ValueError(f"resync is for {' and '.join(RESYNC_ENTITIES)}, not {self.spec.name}")

    async def mark_missing_deleted(self, extra_where: str = "", *args: Any) -> int:
        """Mark the region's records that this run did not see deleted; how many."""
        status = await self.pool.execute(
            f"""
            UPDATE breezeway.{self.spec.table} SET deleted_at = now()
            WHERE region_code = $1 AND deleted_at IS NULL AND synced_at < $2 {extra_where}
            """,
            self.region,
            self.run.started_at,
            *args,
        )
        deleted = int(status.split()[-1])
        if deleted:
            log.info("records_marked_deleted", count=deleted)
        self.run.counts.records_deleted += deleted
        return deleted


class FullListing(Listing):
    """Everything, every run; what a complete listing misses is deleted."""

    incremental = False

    async def list(self, cursor_from: datetime | None) -> None:
        for attempt in range(1, LISTING_PASSES + 1):
            shifted = False
            total = 0
            for endpoint in self.spec.endpoints:
                stats = ListingStats()
                key_values = {"tag_type": endpoint.tag_type} if endpoint.tag_type else None
                await self.run.store(self.client.pages(endpoint, {}, stats), key_values=key_values)
                shifted = shifted or stats.shifted
                total += stats.records
            self.run.listing_size = total
            if not shifted:
                await self.mark_missing_deleted()
                return
            log.warning("listing_shifted", attempt=attempt,
                        detail="records changed while paging; listing again before marking deletions")  # fmt: skip
        log.warning("deletions_not_marked", reason="the listing kept shifting while it was paged")


class UpdatedSince(Listing):
    """By update time since the cursor, else by the backfill window."""

    async def list(self, cursor_from: datetime | None) -> None:
        spec = self.spec
        assert spec.incremental is not None and spec.backfill is not None  # the spec's mode
        since: date | None = None
        if cursor_from is None:
            days = self.run.ctx.settings.reservation_backfill_days
            since = datetime.now(UTC).date() - timedelta(days=days)
            params = {spec.backfill.param: since.isoformat()}
        else:
            params = {spec.incremental.param: _api_datetime(cursor_from)}
        stats = ListingStats()
        await self._store_with_parents(self.client.pages(spec.endpoints[0], params, stats))
        if since is None or spec.backfill.column is None:
            return
        # A complete backfill listing is a full listing of its window: what is missing is gone.
        self.run.listing_size = stats.records
        if stats.shifted:
            log.warning("deletions_not_marked", reason="the listing shifted while it was paged")
            return
        await self.mark_missing_deleted(f"AND {spec.backfill.column} >= $3", since)

    async def list_window(self, since: date, until: date) -> None:
        if self.spec.resync is None:
            await super().list_window(since, until)
            return
        params = self.spec.resync.params(since, until)
        await self._store_with_parents(self.client.pages(self.spec.endpoints[0], params))

    async def _store_with_parents(self, pages: AsyncIterator[list[dict[str, Any]]]) -> None:
        """Store ``pages``; records whose parent is unknown: sync the parent entity once,
        then store them (rejecting those still without a parent)."""
        orphans = await self.run.store(pages, orphans="return")
        if not orphans:
            return
        parent = self.spec.parent_ref.entity if self.spec.parent_ref else None
        log.info("orphans_found", count=len(orphans), parent=parent)
        if parent is not None:
            parent_result = await self.run.sync_parent(parent)
            log.info("parent_synced_for_orphans", parent=parent, status=parent_result.status)
            if parent_result.status is not RunStatus.SUCCESS:
                # Rejecting them now would lose them: the cursor would move past them.
                why = (
                    "is being synced by another process"
                    if parent_result.status is RunStatus.SKIPPED
                    else f"failed ({parent_result.error})"
                )
                raise IncompleteSync(
                    f"{len(orphans)} {self.spec.name} name {parent} records not stored yet and "
                    f"the {parent} run {why}; the cursor stays, so the next run stores them"
                )
        loaded = await self.run.loader().load(orphans, orphans="reject")
        self.run.count(loaded, processed=False)


class DateRangePerParent(Listing):
    """One listing per parent record, concurrently; failures named, the rest stored."""

    def __init__(self, run: EntitySync) -> None:
        super().__init__(run)
        assert self.spec.parent_ref is not None  # the spec's mode
        self.parent = entity(self.spec.parent_ref.entity)

    async def list(self, cursor_from: datetime | None) -> None:
        incremental = self.spec.incremental
        assert incremental is not None  # the spec's mode
        if cursor_from is None:
            await self._per_parent({})
            await self._confirm_and_mark_deleted()
            return
        # Tomorrow: the API may count days in the company's time zone, ahead of UTC.
        end = datetime.now(UTC).date() + timedelta(days=1)

        def since(moment: datetime) -> dict[str, str]:
            start = moment.date() - timedelta(days=incremental.overlap_days)
            return {incremental.param: f"{start.isoformat()},{end.isoformat()}"}

        plan = None
        if self.spec.name == "tasks":  # the polling plan knows the tasks' tables
            plan = await plan_task_polls(
                self.pool, self.region, self.run.ctx.settings, self.run.started_at
            )
        if plan is None:
            await self._per_parent(since(cursor_from))
            return
        log.info("task_polling", busy=len(plan.busy), quiet_due=len(plan.due),
                 quiet_skipped=len(plan.skipped), slot=plan.slot)  # fmt: skip
        self.run.parents_skipped = len(plan.skipped)
        overlap = timedelta(minutes=self.run.ctx.settings.cursor_overlap_minutes)
        quiet = since(min(cursor_from, plan.quiet_since - overlap))
        windows = dict.fromkeys(plan.busy, since(cursor_from)) | dict.fromkeys(plan.due, quiet)
        await self._per_parent(since(cursor_from), windows)

    async def list_window(self, since: date, until: date) -> None:
        if self.spec.resync is None:
            await super().list_window(since, until)
            return
        await self._per_parent(self.spec.resync.params(since, until))

    async def _parent_ids(self) -> list[int]:
        rows = await self.pool.fetch(
            f"SELECT id FROM breezeway.{self.parent.table} "
            "WHERE region_code = $1 AND deleted_at IS NULL ORDER BY id",
            self.region,
        )
        return [row["id"] for row in rows]

    async def _per_parent(
        self, window: dict[str, str], windows: dict[int, dict[str, str]] | None = None
    ) -> None:
        """List every parent's records in ``window``, or only the parents of ``windows``,
        each in its own window."""
        parent_ids = sorted(windows) if windows is not None else await self._parent_ids()
        failures: dict[int, str] = {}
        queue: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue(maxsize=16)
        limit = asyncio.Semaphore(self.run.ctx.settings.task_fetch_concurrency)
        endpoint = self.spec.endpoints[0]
        param = self.spec.per_parent_param
        assert param is not None  # the spec's mode

        async def fetch(parent_id: int) -> None:
            async with limit:
                try:
                    params = {param: parent_id, **(windows or {}).get(parent_id, window)}
                    async for records in self.client.pages(endpoint, params):
                        await queue.put(records)
                except Exception as err:  # noqa: BLE001 - named in the run's error
                    failures[parent_id] = describe(err)
                    log.warning(
                        "parent_listing_failed", parent=self.parent.name, parent_id=parent_id,
                        error=describe(err),
                    )  # fmt: skip

        async def fetch_all() -> None:
            try:
                await asyncio.gather(*(fetch(parent_id) for parent_id in parent_ids))
            finally:
                await queue.put(None)

        async def drain() -> AsyncIterator[list[dict[str, Any]]]:
            while (records := await queue.get()) is not None:
                yield records

        producer = asyncio.create_task(fetch_all())
        try:
            await self.run.store(drain())
        finally:
            if not producer.done():
                producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer
        if failures:
            raise IncompleteSync(self._failures_text(failures, len(parent_ids)))

    def _failures_text(self, failures: dict[int, str], of: int) -> str:
        first_id, first_error = next(iter(failures.items()))
        shown = ", ".join(str(parent_id) for parent_id in list(failures)[:20])
        more = f" and {len(failures) - 20} more" if len(failures) > 20 else ""
        noun = self.parent.record_noun
        return (
            f"{self.spec.name} of {len(failures)} of {of} {self.parent.name} could not be "
            f"fetched ({noun} ids {shown}{more}); first error: {noun} {first_id}: {first_error}"
        )

    async def _confirm_and_mark_deleted(self) -> None:
        """After a complete listing: a missing record is deleted only if the API says 404."""
        candidates = await self.pool.fetch(
            f"""
            SELECT t.id, p.deleted_at IS NOT NULL AS parent_gone
            FROM breezeway.{self.spec.table} t
            JOIN breezeway.{self.parent.table} p
              ON p.region_code = t.region_code AND p.id = t.{self.spec.parent_ref.column}
            WHERE t.region_code = $1 AND t.deleted_at IS NULL AND t.synced_at < $2
            ORDER BY t.id LIMIT {MAX_DELETION_CHECKS + 1}
            """,
            self.region,
            self.run.started_at,
        )
        if len(candidates) > MAX_DELETION_CHECKS:
            log.warning("deletion_checks_capped", limit=MAX_DELETION_CHECKS,
                        detail="the rest are checked by the next full run")  # fmt: skip
            candidates = candidates[:MAX_DELETION_CHECKS]
        gone = [row["id"] for row in candidates if row["parent_gone"]]
        checked = await self._fetch_records([r["id"] for r in candidates if not r["parent_gone"]])
        gone += [record_id for record_id, record in checked if record is None]
        still_there = [record for _, record in checked if record is not None]
        if still_there:
            self.run.count(await self.run.loader().load(still_there))
        if not gone:
            return
        status = await self.pool.execute(
            f"UPDATE breezeway.{self.spec.table} SET deleted_at = now() "
            "WHERE region_code = $1 AND id = ANY($2::bigint[]) AND deleted_at IS NULL",
            self.region,
            gone,
        )
        self.run.counts.records_deleted += int(status.split()[-1])

    async def _fetch_records(self, ids: list[int]) -> list[tuple[int, dict[str, Any] | None]]:
        """Each record by id (None: the API says 404), ``task_fetch_concurrency`` at a time
        under the credential's pacer, so that the checks go at the credential's rate rather
        than one request's latency at a time. The first error cancels the rest and is raised."""
        limit = asyncio.Semaphore(self.run.ctx.settings.task_fetch_concurrency)

        async def fetch(record_id: int) -> tuple[int, dict[str, Any] | None]:
            async with limit:
                return record_id, await self.client.record(self.spec, record_id)

        fetches = [asyncio.ensure_future(fetch(record_id)) for record_id in ids]
        try:
            return await asyncio.gather(*fetches)
        finally:
            for pending in fetches:
                pending.cancel()
            await asyncio.gather(*fetches, return_exceptions=True)


def _api_datetime(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()
