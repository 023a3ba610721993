"""The loader: stores batches of records of one entity and region, each in one transaction.

Its steps live beside it: ``db/batch.py`` (the Python work), ``db/entity_table.py``
(the SQL and the COPY writes), ``db/rejections.py`` (records that cannot be stored).
``Loader.pipeline`` and ``Loader.load_batches`` overlap batches: the Python work of
the next batch runs while PostgreSQL writes the previous ones.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg

from breezeway_daemon.db.batch import (
    PreparedBatch,
    Row,
    prepare_batch,
    typed_rows,
    without_orphans,
)
from breezeway_daemon.db.children import write_embedded
from breezeway_daemon.db.entity_table import entity_table, typed_column_sql
from breezeway_daemon.db.rejections import Rejection, orphan_reason, store_rejections
from breezeway_daemon.db.runs import RunCounts
from breezeway_daemon.entities import ColumnType, EntitySpec
from breezeway_daemon.errors import DatabaseError
from breezeway_daemon.privacy import FieldDrop

WRITE_ATTEMPTS = 3
RETRIED_SQLSTATES = ("40P01", "23505")  # a deadlock; a key another writer inserted meanwhile
CUSTOM_PLANS = "SET LOCAL plan_cache_mode = force_custom_plan"
CACHED_PLANS = "SET LOCAL plan_cache_mode = DEFAULT"

Orphans = Literal["reject", "return"]


@dataclass
class LoadResult(RunCounts):
    """What one batch did: a run's counters (``records_processed`` counts every record
    passed in), plus what only a batch knows: records dropped for a later one with the
    same key, and the orphans it returns."""

    duplicates: int = 0
    orphans: list[Mapping[str, Any]] = field(default_factory=list)

    def add(self, other: RunCounts, *, processed: bool = True) -> None:
        super().add(other, processed=processed)
        if isinstance(other, LoadResult):
            self.duplicates += other.duplicates
            self.orphans.extend(other.orphans)

    @property
    def stored(self) -> int:
        return self.records_new + self.records_updated + self.records_unchanged


@dataclass
class KeySplit:
    """What the database said about a batch's keys."""

    unchanged: int = 0
    restored: int = 0  # unchanged content, but marked deleted: counted as updated
    changed: list[int] = field(default_factory=list)
    new: list[int] = field(default_factory=list)


class Loader:
    """Stores batches of one entity for one region.

    For a batch it: does the Python work (``db/batch.py``); in one statement, looks
    every key up once and touches the rows whose content is unchanged (``_classify``:
    an unchanged record is never converted, copied or parsed again); converts the
    new and changed records, rejecting those that cannot be stored; COPYs the new
    rows into the table and upserts the changed ones (``EntityTable``). Records whose
    parent is not stored come back as ``LoadResult.orphans`` (``orphans="return"``,
    so that the caller can sync the parent and try again) or are rejected.

    ``key_values`` fill key columns that are not in the record (a tag's kind);
    ``defaults`` fill typed columns the record leaves empty (a task's property
    id, known from the listing it came from). ``drop``: the fields never stored
    (``Settings.field_drops``), removed from each record before anything reads it.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        spec: EntitySpec,
        region: str,
        run_id: int | None = None,
        *,
        drop: FieldDrop | None = None,
    ):
        self.pool = pool
        self.spec = spec
        self.region = region
        self.run_id = run_id
        self.drop = drop
        self.table = entity_table(spec)

    async def load(
        self,
        records: Iterable[Any],
        *,
        key_values: Mapping[str, Any] | None = None,
        defaults: Mapping[str, Any] | None = None,
        orphans: Orphans = "reject",
    ) -> LoadResult:
        """Store one batch in one transaction and say what happened to each record."""
        batch = await prepare_batch(self.table, records, key_values or {}, self.drop)
        return await self._store(batch, key_values or {}, defaults or {}, orphans)

    def pipeline(
        self,
        *,
        concurrency: int = 3,
        key_values: Mapping[str, Any] | None = None,
        defaults: Mapping[str, Any] | None = None,
        orphans: Orphans = "reject",
        on_result: Callable[[LoadResult], None] | None = None,
    ) -> LoadPipeline:
        """Batches submitted to the returned pipeline are stored ``concurrency`` at a time.

        Use it where batches arrive one by one (pages from the API)::

            async with loader.pipeline(on_result=count) as pipeline:
                async for page in pages:
                    await pipeline.submit(page)
            total = pipeline.result

        ``submit`` does the batch's Python work at once, then returns as soon as
        fewer than ``concurrency`` batches are being written, so that the caller's
        next page and batch are prepared while PostgreSQL writes this one. Each
        batch is still one transaction, on its own pool connection (the pool must
        allow ``concurrency`` connections for this loader). Whatever the order of
        commits, a record wins over those of earlier batches: a batch that shares
        a key with a batch being written waits for it before touching the table.
        ``on_result`` gets each batch's ``LoadResult``, in submission order, once
        the batch is committed; leaving the block waits for every batch. If a batch
        fails, the error is raised by a later ``submit`` or on leaving the block,
        after the batches being written have finished (committed or rolled back);
        batches committed before stay committed, which a replay makes harmless.
        """
        return LoadPipeline(self, concurrency, key_values or {}, defaults or {}, orphans, on_result)

    async def load_batches(
        self,
        batches: Iterable[Iterable[Any]] | AsyncIterable[Iterable[Any]],
        *,
        concurrency: int = 3,
        key_values: Mapping[str, Any] | None = None,
        defaults: Mapping[str, Any] | None = None,
        orphans: Orphans = "reject",
        on_result: Callable[[LoadResult], None] | None = None,
    ) -> LoadResult:
        """Store each batch in its own transaction, ``concurrency`` at a time; return the sum.

        The same results as ``load`` on each batch in turn (a record wins over
        earlier batches), faster: see ``pipeline`` for how batches overlap and what
        a failure leaves behind.
        """
        async with self.pipeline(
            concurrency=concurrency,
            key_values=key_values,
            defaults=defaults,
            orphans=orphans,
            on_result=on_result,
        ) as pipeline:
            if isinstance(batches, AsyncIterable):
                async for batch in batches:
                    await pipeline.submit(batch)
            else:
                for batch in batches:
                    await pipeline.submit(batch)
        return pipeline.result

    async def reject(self, records: Iterable[Any], reason: str) -> int:
        """Send ``records`` to ``rejected_records`` with ``reason``; returns how many."""
        drop = self.drop.apply if self.drop else None
        rejections = [Rejection(drop(r) if drop else r, reason) for r in records]
        if rejections:
            async with self.pool.acquire() as conn:
                await store_rejections(conn, self.region, self.spec.name, self.run_id, rejections)
        return len(rejections)

    # --- steps -----------------------------------------------------------------
    async def _store(
        self,
        batch: PreparedBatch,
        key_values: Mapping[str, Any],
        defaults: Mapping[str, Any],
        orphans: Orphans,
    ) -> LoadResult:
        """Write a prepared batch in one transaction.

        A deadlock, or a new row that another writer inserted meanwhile, rolls the
        transaction back whole: the batch is then simply written again.
        """
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            committed: LoadResult | None = None
            try:
                async with self.pool.acquire() as conn:
                    try:
                        async with conn.transaction():
                            written = await self._write_batch(
                                conn, batch, key_values, defaults, orphans
                            )
                    except Exception as err:
                        if _is_closed(conn) and getattr(err, "sqlstate", None) is None:
                            # The connection died mid-batch; what the client raises then
                            # ("cannot call Transaction.__aexit__()...", "cannot switch to
                            # state...") hides that. The server rolled the batch back.
                            raise DatabaseError(
                                f"the connection was lost while storing a batch ({err})",
                                connection_lost=True,
                            ) from err
                        raise
                    committed = written
                return committed
            except Exception as err:
                if isinstance(err, DatabaseError) and err.sqlstate in RETRIED_SQLSTATES:
                    if attempt < WRITE_ATTEMPTS:
                        continue
                    raise
                if committed is not None:
                    # Committed; only handing the connection back (its reset) failed, which
                    # loses a connection the pool replaces, not the batch.
                    return committed
                raise
        raise AssertionError("unreachable")

    async def _write_batch(
        self,
        conn: asyncpg.Connection,
        batch: PreparedBatch,
        key_values: Mapping[str, Any],
        defaults: Mapping[str, Any],
        orphans: Orphans,
    ) -> LoadResult:
        result = LoadResult(records_processed=batch.received, duplicates=batch.duplicates)
        rejections = list(batch.rejections)
        fixed = [key_values[name] for name in self.table.fixed_key]
        split = await self._classify(conn, batch, fixed)
        if split.new or split.changed:
            await conn.execute(CACHED_PLANS)
        result.records_unchanged = split.unchanged
        result.records_updated = split.restored
        rows_of = functools.partial(
            typed_rows, self.table, self.region, self.run_id,
            entries=batch.entries, fixed=fixed, defaults=defaults, rejections=rejections,
        )  # fmt: skip
        new_rows, parents = await rows_of(split.new)
        changed_rows, changed_parents = await rows_of(split.changed)
        parents |= changed_parents
        if parents:
            missing = await self.table.missing_parents(conn, self.region, parents)
            if missing:
                new_rows, orphaned = without_orphans(self.table, new_rows, missing)
                changed_rows, more = without_orphans(self.table, changed_rows, missing)
                orphaned += more
                if orphans == "return":
                    result.orphans.extend(orphaned)
                else:
                    rejections.extend(
                        Rejection(record, orphan_reason(self.spec, record, defaults))
                        for record in orphaned
                    )
        new, updated, unchanged, written = await self._write(conn, new_rows, changed_rows, fixed)
        # Child tables (db/children.py): replaced for the new and changed parents only.
        result.items_rejected = await write_embedded(
            conn, self.table, self.region, self.run_id, new_rows, written
        )
        result.records_new += new
        result.records_updated += updated
        result.records_unchanged += unchanged
        if rejections:
            await store_rejections(conn, self.region, self.spec.name, self.run_id, rejections)
        result.records_rejected = len(rejections)
        return result

    async def _classify(
        self, conn: asyncpg.Connection, batch: PreparedBatch, fixed: list[Any]
    ) -> KeySplit:
        """Touch the unchanged rows; say which keys are new and which changed."""
        if not batch.entries:
            return KeySplit()
        ids = list(batch.entries)
        digests = [entry.digest for entry in batch.entries.values()]
        # Planned for this batch's keys and the table's size of now: a plan cached
        # while the table was small (scanning it whole) would stay in use as it grows.
        # ``_write_batch`` sets it back before writing rows, whose foreign-key checks
        # must keep their cached plans (planning them per row costs ~10 us a row).
        await conn.execute(CUSTOM_PLANS)
        row = await conn.fetchrow(self.table.classify, self.region, ids, digests, *fixed)
        found = set(row["found"] or ())
        touched = set(row["touched"] or ())
        restored = row["restored"]
        # Stored but not touched: another content, or (rarely) the same content
        # that another writer rewrote in between; either way, write it.
        split = KeySplit(unchanged=len(touched) - restored, restored=restored)
        for identifier in ids:
            if identifier not in found:
                split.new.append(identifier)
            elif identifier not in touched:
                split.changed.append(identifier)
        return split

    async def _write(
        self,
        conn: asyncpg.Connection,
        new_rows: list[Row],
        changed_rows: list[Row],
        fixed: list[Any],
    ) -> tuple[int, int, int, list[Row]]:
        """Write new and changed rows; returns (new, updated, unchanged) and the changed
        rows written (an older version of a stored row is not).

        Rows whose key was not stored a moment ago are COPYed straight into the
        table, which saves parsing their jsonb twice. Should another writer have
        inserted one of them since, the unique violation rolls the batch back and
        ``_store`` writes it again: its lookup then sends those rows to the upsert.
        """
        new = 0
        if new_rows:
            await self.table.copy_new(conn, [row for row, _ in new_rows])
            new = len(new_rows)
        if not changed_rows:
            return new, 0, 0, []
        upserted_new, updated, unchanged, ids = await self.table.upsert(
            conn, self.region, [row for row, _ in changed_rows], fixed
        )
        id_at = len(self.table.key) - 1
        written = [(row, entry) for row, entry in changed_rows if row[id_at] in ids]
        return new + upserted_new, updated, unchanged, written


def _is_closed(conn: asyncpg.Connection) -> bool:
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:
        return True  # the pool detached it from its lost connection


class LoadPipeline:
    """Batches of one loader, stored ``concurrency`` at a time; see ``Loader.pipeline``."""

    def __init__(
        self,
        loader: Loader,
        concurrency: int,
        key_values: Mapping[str, Any],
        defaults: Mapping[str, Any],
        orphans: Orphans,
        on_result: Callable[[LoadResult], None] | None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.loader = loader
        self.concurrency = concurrency
        self.key_values = key_values
        self.defaults = defaults
        self.orphans: Orphans = orphans
        self.on_result = on_result
        self.result = LoadResult()
        self._in_flight: list[tuple[asyncio.Task[LoadResult], set[int]]] = []

    async def __aenter__(self) -> LoadPipeline:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is not None:
            await self._settle()
            return
        await self._drain(0)

    async def submit(self, records: Iterable[Any]) -> None:
        """Prepare a batch now and start writing it; returns when a writer is free."""
        batch = await prepare_batch(self.loader.table, records, self.key_values, self.loader.drop)
        keys = set(batch.entries)
        # A record must win over the same key in an earlier batch: wait for those.
        overlapping = [task for task, ids in self._in_flight if not keys.isdisjoint(ids)]
        if overlapping:
            await asyncio.wait(overlapping)
        await self._drain(self.concurrency - 1)
        task = asyncio.ensure_future(
            self.loader._store(batch, self.key_values, self.defaults, self.orphans)
        )
        self._in_flight.append((task, keys))

    async def _drain(self, keep: int) -> None:
        """Collect finished batches in order until at most ``keep`` are in flight."""
        while self._in_flight:
            task, _ = self._in_flight[0]
            if len(self._in_flight) <= keep and not task.done():
                return
            try:
                loaded = await asyncio.shield(task)
            except BaseException:
                await self._settle()
                raise
            self._in_flight.pop(0)
            self.result.add(loaded)
            if self.on_result is not None:
                self.on_result(loaded)

    async def _settle(self) -> None:
        """Let every batch in flight finish (commit or roll back).

        Batches that committed are still counted (``result``, ``on_result``), so
        that a run stopped midway records exactly what it stored.
        """
        tasks = [task for task, _ in self._in_flight]
        self._in_flight.clear()
        if not tasks:
            return
        await asyncio.wait(tasks)
        for task in tasks:
            if task.cancelled() or task.exception() is not None:
                continue  # rolled back: nothing to count
            loaded = task.result()
            self.result.add(loaded)
            if self.on_result is not None:
                self.on_result(loaded)


__all__ = [
    "Loader",
    "LoadPipeline",
    "LoadResult",
    "ColumnType",
    "typed_column_sql",
]
