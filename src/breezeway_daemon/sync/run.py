"""One run of one region and entity: its lease around its listing, stored in batches.

The lease (``db.lease``) holds the pair's lock and ``running`` row and writes the end; the
listing (``sync.listings``) fetches pages; this module streams them into the loader in
batches (one transaction each, so memory stays bounded) and keeps the run's counts and cursor.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from breezeway_daemon import metrics
from breezeway_daemon.api.client import BreezewayClient, CallCounter, count_calls
from breezeway_daemon.db import runs
from breezeway_daemon.db.lease import RunLease, RunNotStarted
from breezeway_daemon.db.loader import Loader, LoadResult
from breezeway_daemon.db.runs import RequestMode, RunCounts
from breezeway_daemon.entities import ENTITIES, EntitySpec, ListingMode
from breezeway_daemon.sync.context import RunResult, SyncContext, SyncRequest
from breezeway_daemon.sync.details import TaskDetails
from breezeway_daemon.sync.listings import (
    DateRangePerParent,
    FullListing,
    Listing,
    UpdatedSince,
)

LISTINGS: dict[ListingMode, type[Listing]] = {
    ListingMode.FULL: FullListing,
    ListingMode.UPDATED_SINCE: UpdatedSince,
    ListingMode.UPDATED_DATE_RANGE_PER_PARENT: DateRangePerParent,
    ListingMode.DETAILS_PER_RECORD: TaskDetails,
}
"""The listing strategy of each ``ListingMode`` (``sync.listings``, ``sync.details``)."""
if set(LISTINGS) != set(ListingMode):
    raise RuntimeError("every ListingMode needs its listing strategy in LISTINGS")


class RunInterrupted(Exception):
    """The process is stopping; the run ends after the batch it was storing."""


class EntitySync:
    """One run of one region and entity."""

    def __init__(self, ctx: SyncContext, request: SyncRequest) -> None:
        self.ctx = ctx
        self.request = request
        self.spec: EntitySpec = ENTITIES[request.entity]
        self.region = request.region
        self.counts = RunCounts()
        self.calls = CallCounter()
        self.client: BreezewayClient = ctx.api.client(request.region)
        self.listing_size: int | None = None
        """How many records a complete listing held (None: not a complete listing)."""
        self.parents_skipped = 0
        """Parents whose listing the polling plan left to a later run (``sync.polling``)."""
        self.lease = RunLease(
            ctx, self.region, self.spec.name,
            mode=request.mode, trigger=request.trigger, counts=self.current_counts,
        )  # fmt: skip

    async def run(self) -> RunResult:
        """Run once; never raises for a sync failure (the result says it), only on cancel."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with self.lease:
                with count_calls(self.calls):
                    self.lease.cursor_to = await self._fetch()
        except RunNotStarted:
            pass  # the lease's end says why
        end = self.lease.end
        result = RunResult(
            self.region, self.spec.name, end.status, self.lease.run_id, self.counts,
            end.error, end.error_kind, loop.time() - started, self.request.mode,
            self.listing_size, self.parents_skipped,
        )  # fmt: skip
        metrics.run_finished(result)
        return result

    async def _fetch(self) -> datetime | None:
        """Fetch and store; returns the new cursor (or None when the cursor must not move)."""
        listing = LISTINGS[self.spec.mode](self)
        if self.request.mode is RequestMode.RESYNC:
            assert self.request.since is not None  # checked by SyncRequest
            until = self.request.until or datetime.now(UTC).date()
            await listing.list_window(self.request.since, until)
            return None
        if not listing.incremental:
            await listing.list(None)
            return None
        assert self.lease.started_at is not None
        overlap = timedelta(minutes=self.ctx.settings.cursor_overlap_minutes)
        new_cursor = self.lease.started_at - overlap
        if self.request.mode is not RequestMode.FULL:
            self.lease.cursor_from = await runs.read_cursor(
                self.ctx.pool, self.region, self.spec.name
            )
        await listing.list(self.lease.cursor_from)
        return new_cursor

    # --- what listings use -------------------------------------------------------------
    @property
    def started_at(self) -> datetime:
        """The run's start by the database's clock: rows not synced since are missing."""
        assert self.lease.started_at is not None
        return self.lease.started_at

    def current_counts(self) -> RunCounts:
        """The run's counts, API calls included, as they are now."""
        self.counts.api_calls_made = self.calls.calls
        return self.counts

    def loader(self) -> Loader:
        drop = self.ctx.settings.field_drops.get(self.spec.name)
        return Loader(self.ctx.pool, self.spec, self.region, self.lease.run_id, drop=drop)

    def count(self, loaded: RunCounts, *, processed: bool = True) -> None:
        """Add a batch's outcome to the run's counts (``processed=False``: a retry of
        records already counted as processed)."""
        self.counts.add(loaded, processed=processed)
        if self.ctx.on_progress is not None:
            self.ctx.on_progress(self.region, self.spec.name, self.current_counts())

    async def store(
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
            self.count(loaded)

        batch: list[dict[str, Any]] = []
        pipeline = self.loader().pipeline(
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
                    self.stop_if_requested()
            if batch:
                await pipeline.submit(batch)
        return kept_orphans

    def stop_if_requested(self) -> None:
        """Between batch transactions: end the run if the process is stopping."""
        if self.ctx.stopping.is_set():
            raise RunInterrupted(self.lease.cancel_reason)

    async def sync_parent(self, parent: str) -> RunResult:
        """A full run of ``parent`` in this region (for records naming unknown parents)."""
        request = SyncRequest(
            self.region, parent, RequestMode.FULL, trigger=f"parent-of-{self.spec.name}"
        )
        return await EntitySync(self.ctx, request).run()
