"""The loader: stores one batch of records of one entity and region, in one transaction.

For a batch it:
1. removes NUL characters, reads each record's key, serializes and hashes its
   content, and keeps one record per key (the last wins). This is the only work
   an unchanged record costs on this side;
2. in one statement, looks every key up once, moves ``synced_at`` (and clears
   ``deleted_at``) of the rows whose stored hash equals the new one, and says
   which keys were stored with another content. An unchanged record is never
   converted, copied or parsed again;
3. converts the typed columns of new and changed records; a record that cannot
   be stored goes to ``rejected_records`` with the reason;
4. COPYs new rows (binary, jsonb already serialized) straight into the table and
   changed rows into a temporary staging table, from which
   ``INSERT ... ON CONFLICT DO UPDATE`` rewrites them.

Records whose parent (a reservation's property) is not in the database are not
stored: they come back as ``LoadResult.orphans`` when ``orphans="return"``, so
that the caller can sync the parent entity and try again, or are rejected.

``Loader.load`` stores one batch and returns when it is committed.
``Loader.pipeline`` and ``Loader.load_batches`` overlap batches: the Python work
of the next batch runs while PostgreSQL writes the previous ones, each batch still
in its own transaction on its own pool connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg

from breezeway_daemon.db.runs import RunCounts
from breezeway_daemon.entities import ColumnType, EntitySpec
from breezeway_daemon.errors import DatabaseError
from breezeway_daemon.records import (
    RecordRejected,
    column_reader,
    column_values,
    content_hash,
    display_id,
    record_id,
    serialize,
)

SCHEMA = "breezeway"
BOOKKEEPING = ("raw", "content_hash", "last_run_id")
KEY_TYPES = {"id": "bigint", "tag_type": "text"}
WRITE_ATTEMPTS = 3
RETRIED_SQLSTATES = ("40P01", "23505")  # a deadlock; a key another writer inserted meanwhile
STEP = 25  # records of Python work (about 0.2 ms) between two turns of the event loop
CUSTOM_PLANS = "SET LOCAL plan_cache_mode = force_custom_plan"
CACHED_PLANS = "SET LOCAL plan_cache_mode = DEFAULT"

Orphans = Literal["reject", "return"]


@dataclass
class Rejection:
    record: Any
    reason: str


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
class _Entry:
    record: Mapping[str, Any]
    data: bytes
    digest: bytes


@dataclass
class _Batch:
    """A batch after the Python work that needs no database: keys, JSON, hashes."""

    received: int
    duplicates: int
    entries: dict[int, _Entry]  # by id, in arrival order (other key columns are constant)
    rejections: list[Rejection]


@dataclass
class _Split:
    """What the database said about a batch's keys."""

    unchanged: int = 0
    restored: int = 0  # unchanged content, but marked deleted: counted as updated
    changed: list[int] = field(default_factory=list)
    new: list[int] = field(default_factory=list)


class EntityTable:
    """The SQL for one entity's table, built once from its spec."""

    def __init__(self, spec: EntitySpec) -> None:
        if "id" not in spec.key:
            raise ValueError(f"{spec.name}: the loader needs an id in the key")
        self.spec = spec
        self.name = f"{SCHEMA}.{spec.table}"
        self.staging = f"staging_{spec.table}"
        self.key = ("region_code", *spec.key)
        # Key columns other than id come from ``key_values``: one value per batch.
        self.fixed_key = tuple(name for name in spec.key if name != "id")
        typed = spec.typed_column_names
        self.copy_columns = (*self.key, *typed, *BOOKKEEPING)
        self.reader = column_reader(spec.columns)
        key_list = ", ".join(self.key)
        updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in (*typed, *BOOKKEEPING))
        columns = ", ".join(self.copy_columns)
        fixed = "".join(
            f" AND t.{name} = ${i + 4}::{KEY_TYPES[name]}" for i, name in enumerate(self.fixed_key)
        )
        self.create_staging = (
            f"CREATE TEMP TABLE IF NOT EXISTS {self.staging} "
            f"(LIKE {self.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        # One index probe per key, whatever the statistics say: the OFFSET keeps
        # the lateral subquery a per-key lookup (a table just loaded has no
        # statistics, and the planner would otherwise hash a whole region for
        # every batch). Unchanged rows are then updated through their ctid, with
        # no second probe; being HOT updates (fillfactor, migration 002), they
        # touch no index either.
        self.classify = (
            "WITH stored AS MATERIALIZED ("
            "SELECT s.* FROM unnest($2::bigint[], $3::bytea[]) AS k(id, digest), LATERAL ("
            "SELECT t.ctid AS row_id, t.id, t.content_hash = k.digest AS same, "
            "t.deleted_at IS NOT NULL AS deleted "
            f"FROM {self.name} AS t WHERE t.region_code = $1{fixed} AND t.id = k.id OFFSET 0"
            ") AS s), "
            f"touched AS (UPDATE {self.name} AS t SET synced_at = now(), deleted_at = NULL "
            "FROM stored WHERE stored.same AND t.ctid = stored.row_id "
            "RETURNING t.id, stored.deleted) "
            "SELECT (SELECT array_agg(id) FROM stored) AS found, "
            "(SELECT array_agg(id) FROM touched) AS touched, "
            "(SELECT count(*) FROM touched WHERE deleted) AS restored"
        )
        # A row is never replaced by an older version of itself (by updated_at): a poll
        # and the webhook worker may write one record at the same moment.
        newer = (
            f" AND (EXCLUDED.updated_at IS NULL OR {spec.table}.updated_at IS NULL "
            f"OR EXCLUDED.updated_at >= {spec.table}.updated_at)"
            if "updated_at" in typed
            else ""
        )
        self.upsert = (
            f"INSERT INTO {self.name} ({columns}) SELECT {columns} FROM {self.staging} "
            f"ON CONFLICT ({key_list}) DO UPDATE SET {updates}, "
            "changed_at = now(), synced_at = now(), deleted_at = NULL "
            f"WHERE ({spec.table}.content_hash IS DISTINCT FROM EXCLUDED.content_hash "
            f"OR {spec.table}.deleted_at IS NOT NULL){newer} "
            "RETURNING id, (xmax = 0) AS inserted"
        )
        # For rows the upsert skipped: stored meanwhile by another writer, same content.
        fixed_touch = "".join(
            f" AND t.{name} = ${i + 3}::{KEY_TYPES[name]}" for i, name in enumerate(self.fixed_key)
        )
        self.touch = (
            f"UPDATE {self.name} AS t SET synced_at = now() "
            "FROM unnest($2::bigint[]) AS k(id) "
            f"WHERE t.region_code = $1{fixed_touch} AND t.id = k.id"
        )
        self.parent_check = None
        if spec.parent_ref is not None:
            self.parent_check = (
                f"SELECT id FROM {SCHEMA}.{spec.parent_ref.entity} "
                "WHERE region_code = $1 AND id = ANY($2::bigint[])"
            )


_TABLES: dict[str, EntityTable] = {}


def entity_table(spec: EntitySpec) -> EntityTable:
    table = _TABLES.get(spec.name)
    if table is None or table.spec is not spec:
        table = _TABLES[spec.name] = EntityTable(spec)
    return table


class Loader:
    """Stores batches of one entity for one region.

    ``key_values`` fill key columns that are not in the record (a tag's kind);
    ``defaults`` fill typed columns the record leaves empty (a task's property
    id, known from the listing it came from).
    """

    def __init__(
        self, pool: asyncpg.Pool, spec: EntitySpec, region: str, run_id: int | None = None
    ):
        self.pool = pool
        self.spec = spec
        self.region = region
        self.run_id = run_id
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
        batch = await self._prepare(records, key_values or {})
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
        rejections = [Rejection(record, reason) for record in records]
        if rejections:
            async with self.pool.acquire() as conn:
                await self._reject(conn, rejections)
        return len(rejections)

    # --- steps -----------------------------------------------------------------
    async def _prepare(self, records: Iterable[Any], key_values: Mapping[str, Any]) -> _Batch:
        """The batch's keys, JSON and hashes; no database work. The last record of a key wins.

        Every ``STEP`` records it lets the event loop run, so that the statements and
        commits of the batches being written go out while it works (in a pipeline,
        PostgreSQL would otherwise wait for Python).
        """
        for name in self.table.fixed_key:
            if key_values.get(name) is None:
                raise ValueError(f"{self.spec.name} needs key_values[{name!r}]")
        received = duplicates = 0
        entries: dict[int, _Entry] = {}
        rejections: list[Rejection] = []
        for record in records:
            received += 1
            if not received % STEP:
                await asyncio.sleep(0)
            try:
                identifier = record_id(record)
            except RecordRejected as err:
                rejections.append(Rejection(record, str(err)))
                continue
            clean, data = serialize(record)
            if identifier in entries:
                duplicates += 1
                del entries[identifier]  # keep the last one, in arrival order
            entries[identifier] = _Entry(clean, data, content_hash(data))
        return _Batch(received, duplicates, entries, rejections)

    async def _store(
        self,
        batch: _Batch,
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
                if getattr(err, "sqlstate", None) in RETRIED_SQLSTATES:
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
        batch: _Batch,
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
        entries = batch.entries
        new_rows, parents = await self._rows(split.new, entries, fixed, defaults, rejections)
        changed_rows, changed_parents = await self._rows(
            split.changed, entries, fixed, defaults, rejections
        )
        parents |= changed_parents
        if parents:
            missing = await self._missing_parents(conn, parents)
            if missing:
                new_rows, orphaned = self._without_orphans(new_rows, missing)
                changed_rows, more = self._without_orphans(changed_rows, missing)
                orphaned += more
                if orphans == "return":
                    result.orphans.extend(orphaned)
                else:
                    rejections.extend(
                        Rejection(record, self._orphan_reason(record, defaults))
                        for record in orphaned
                    )
        new, updated, unchanged = await self._write(conn, new_rows, changed_rows, fixed)
        result.records_new += new
        result.records_updated += updated
        result.records_unchanged += unchanged
        if rejections:
            await self._reject(conn, rejections)
        result.records_rejected = len(rejections)
        return result

    async def _classify(self, conn: asyncpg.Connection, batch: _Batch, fixed: list[Any]) -> _Split:
        """Touch the unchanged rows; say which keys are new and which changed."""
        if not batch.entries:
            return _Split()
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
        split = _Split(unchanged=len(touched) - restored, restored=restored)
        for identifier in ids:
            if identifier not in found:
                split.new.append(identifier)
            elif identifier not in touched:
                split.changed.append(identifier)
        return split

    async def _rows(
        self,
        ids: list[int],
        entries: dict[int, _Entry],
        fixed: list[Any],
        defaults: Mapping[str, Any],
        rejections: list[Rejection],
    ) -> tuple[list[tuple[tuple[Any, ...], _Entry]], set[int]]:
        rows = []
        parent_ids: set[int] = set()
        parent_ref = self.spec.parent_ref
        parent_index = self.spec.typed_column_names.index(parent_ref.column) if parent_ref else None
        values_of = self.table.reader.values
        region, run_id = self.region, self.run_id
        for n, identifier in enumerate(ids, 1):
            if not n % STEP:
                await asyncio.sleep(0)  # as in ``_prepare``
            entry = entries[identifier]
            try:
                values = values_of(entry.record, defaults)
            except RecordRejected as err:
                rejections.append(Rejection(entry.record, str(err)))
                continue
            if parent_index is not None:
                parent_ids.add(values[parent_index])
            key = (region, *fixed, identifier) if fixed else (region, identifier)
            rows.append(((*key, *values, entry.data, entry.digest, run_id), entry))
        return rows, parent_ids

    async def _missing_parents(self, conn: asyncpg.Connection, parent_ids: set[int]) -> set[int]:
        assert self.table.parent_check is not None
        found = await conn.fetch(self.table.parent_check, self.region, list(parent_ids))
        return parent_ids - {row["id"] for row in found}

    def _without_orphans(
        self, rows: list[tuple[tuple[Any, ...], _Entry]], missing: set[int]
    ) -> tuple[list[tuple[tuple[Any, ...], _Entry]], list[Mapping[str, Any]]]:
        assert self.spec.parent_ref is not None
        position = len(self.table.key) + self.spec.typed_column_names.index(
            self.spec.parent_ref.column
        )
        kept, orphaned = [], []
        for row, entry in rows:
            if row[position] in missing:
                orphaned.append(entry.record)
            else:
                kept.append((row, entry))
        return kept, orphaned

    def _orphan_reason(self, record: Mapping[str, Any], defaults: Mapping[str, Any] | None) -> str:
        ref = self.spec.parent_ref
        assert ref is not None
        column = next(c for c in self.spec.columns if c.name == ref.column)
        value = column_values(record, (column,), defaults or {})[0]
        return f"{'.'.join(column.path)} {value} is not a known {ref.entity} record of this region"

    async def _write(
        self,
        conn: asyncpg.Connection,
        new_rows: list[tuple[tuple[Any, ...], _Entry]],
        changed_rows: list[tuple[tuple[Any, ...], _Entry]],
        fixed: list[Any],
    ) -> tuple[int, int, int]:
        """Write new and changed rows; returns (new, updated, unchanged).

        Rows whose key was not stored a moment ago are COPYed straight into the
        table, which saves parsing their jsonb twice. Should another writer have
        inserted one of them since, the unique violation rolls the batch back and
        ``_store`` writes it again: its lookup then sends those rows to the upsert.
        """
        new = 0
        if new_rows:
            await conn.copy_records_to_table(
                self.spec.table,
                schema_name=SCHEMA,
                records=[row for row, _ in new_rows],
                columns=self.table.copy_columns,
            )
            new = len(new_rows)
        if not changed_rows:
            return new, 0, 0
        upserted_new, updated, unchanged = await self._upsert(
            conn, [row for row, _ in changed_rows], fixed
        )
        return new + upserted_new, updated, unchanged

    async def _upsert(
        self, conn: asyncpg.Connection, rows: list[tuple[Any, ...]], fixed: list[Any]
    ) -> tuple[int, int, int]:
        await conn.execute(self.table.create_staging)
        await conn.copy_records_to_table(
            self.table.staging, records=rows, columns=self.table.copy_columns
        )
        written = await conn.fetch(self.table.upsert)
        new = sum(1 for row in written if row["inserted"])
        skipped = len(rows) - len(written)
        if skipped:
            # The upsert's WHERE skipped rows another writer stored meanwhile with
            # the same content: they are unchanged, and were received now.
            id_position = len(self.table.key) - 1
            done = {row["id"] for row in written}
            same = [row[id_position] for row in rows if row[id_position] not in done]
            await conn.execute(self.table.touch, self.region, same, *fixed)
        return new, len(written) - new, skipped

    async def _reject(self, conn: asyncpg.Connection, rejections: list[Rejection]) -> None:
        rows = []
        for rejection in rejections:
            record = rejection.record
            raw = serialize(record)[1] if isinstance(record, Mapping | list) else None
            rows.append(
                (
                    self.region,
                    self.spec.name,
                    display_id(record),
                    rejection.reason,
                    raw,
                    self.run_id,
                )
            )
        await conn.copy_records_to_table(
            "rejected_records",
            schema_name=SCHEMA,
            records=rows,
            columns=("region_code", "entity_type", "record_id", "reason", "raw", "run_id"),
        )


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
        batch = await self.loader._prepare(records, self.key_values)
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


def typed_column_sql(spec: EntitySpec) -> dict[str, str]:
    """Column name to SQL type, as the migration must declare them (checked by tests)."""
    return {column.name: column.type.value for column in spec.columns} | (
        {"tag_type": "text"} if "tag_type" in spec.key else {}
    )


__all__ = ["Loader", "LoadPipeline", "LoadResult", "ColumnType", "typed_column_sql"]
