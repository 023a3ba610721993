"""The loader: stores one batch of records of one entity and region, in one transaction.

For a batch it:
1. removes NUL characters, reads each record's key, hashes its content, and keeps
   one record per key (the last wins);
2. asks the table for the stored hashes of those keys, so that an unchanged
   record is never converted, copied or parsed again: its row only gets
   ``synced_at`` moved (and ``deleted_at`` cleared), in one set-based UPDATE;
3. converts the typed columns of new and changed records; a record that cannot
   be stored goes to ``rejected_records`` with the reason;
4. COPYs new and changed rows (binary, jsonb already serialized) into a temporary
   staging table and upserts them with ``INSERT ... ON CONFLICT DO UPDATE``.

Records whose parent (a reservation's property) is not in the database are not
stored: they come back as ``LoadResult.orphans`` when ``orphans="return"``, so
that the caller can sync the parent entity and try again, or are rejected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg

from breezeway_daemon.entities import ColumnType, EntitySpec
from breezeway_daemon.records import (
    ColumnReader,
    RecordRejected,
    content_hash,
    display_id,
    record_id,
    serialize,
)

SCHEMA = "breezeway"
BOOKKEEPING = ("raw", "content_hash", "last_run_id")
KEY_TYPES = {"id": "bigint", "tag_type": "text"}


@dataclass
class Rejection:
    record: Any
    reason: str


@dataclass
class LoadResult:
    """What one batch did. ``received`` counts every record passed in."""

    received: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    duplicates: int = 0
    orphans: list[Mapping[str, Any]] = field(default_factory=list)

    def add(self, other: LoadResult) -> None:
        self.received += other.received
        self.new += other.new
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.rejected += other.rejected
        self.duplicates += other.duplicates
        self.orphans.extend(other.orphans)

    @property
    def stored(self) -> int:
        return self.new + self.updated + self.unchanged


@dataclass
class _Prepared:
    key: tuple[Any, ...]
    record: Mapping[str, Any]
    data: bytes
    digest: bytes
    stored: bool = False


class EntityTable:
    """The SQL for one entity's table, built once from its spec."""

    def __init__(self, spec: EntitySpec) -> None:
        self.spec = spec
        self.name = f"{SCHEMA}.{spec.table}"
        self.staging = f"staging_{spec.table}"
        self.key = ("region_code", *spec.key)
        typed = spec.typed_column_names
        self.copy_columns = (*self.key, *typed, *BOOKKEEPING)
        self.reader = ColumnReader(spec.columns)
        key_list = ", ".join(self.key)
        updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in (*typed, *BOOKKEEPING))
        columns = ", ".join(self.copy_columns)
        key_arrays = ", ".join(f"${i + 2}::{KEY_TYPES[name]}[]" for i, name in enumerate(spec.key))
        key_names = ", ".join(spec.key)
        self.create_staging = (
            f"CREATE TEMP TABLE IF NOT EXISTS {self.staging} "
            f"(LIKE {self.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        self.select_hashes = (
            f"SELECT {key_names}, content_hash, deleted_at IS NOT NULL AS deleted "
            f"FROM {self.name} JOIN unnest({key_arrays}) AS k({key_names}) USING ({key_names}) "
            "WHERE region_code = $1"
        )
        self.upsert = (
            f"INSERT INTO {self.name} ({columns}) SELECT {columns} FROM {self.staging} "
            f"ON CONFLICT ({key_list}) DO UPDATE SET {updates}, "
            "changed_at = now(), synced_at = now(), deleted_at = NULL "
            f"WHERE {spec.table}.content_hash IS DISTINCT FROM EXCLUDED.content_hash "
            f"OR {spec.table}.deleted_at IS NOT NULL "
            "RETURNING (xmax = 0) AS inserted"
        )
        self.touch = (
            f"UPDATE {self.name} AS t SET synced_at = now(), deleted_at = NULL "
            f"FROM unnest({key_arrays}) AS k({key_names}) "
            f"WHERE t.region_code = $1 AND " + " AND ".join(f"t.{n} = k.{n}" for n in spec.key)
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
        orphans: Literal["reject", "return"] = "reject",
    ) -> LoadResult:
        """Store one batch in one transaction and say what happened to each record."""
        result = LoadResult()
        key_values = key_values or {}
        rejections: list[Rejection] = []
        batch: dict[tuple[Any, ...], _Prepared] = {}
        for record in records:
            result.received += 1
            try:
                prepared = self._prepare(record, key_values)
            except RecordRejected as err:
                rejections.append(Rejection(record, str(err)))
                continue
            if prepared.key in batch:
                result.duplicates += 1
                del batch[prepared.key]  # keep the last one, in arrival order
            batch[prepared.key] = prepared

        async with self.pool.acquire() as conn, conn.transaction():
            changed, unchanged, restored = await self._split_by_stored_hash(conn, batch)
            rows, parent_ids = self._rows(changed, defaults or {}, rejections)
            if parent_ids:
                missing = await self._missing_parents(conn, parent_ids)
                if missing:
                    rows, orphaned = self._without_orphans(rows, missing)
                    if orphans == "return":
                        result.orphans.extend(orphaned)
                    else:
                        rejections.extend(
                            Rejection(r, self._orphan_reason(r, defaults)) for r in orphaned
                        )
            if rows:
                new, updated = await self._write(conn, rows)
                result.new += new
                result.updated += updated
            if unchanged:
                await self._touch(conn, unchanged)
                result.unchanged += len(unchanged) - restored
                result.updated += restored
            if rejections:
                await self._reject(conn, rejections)
        result.rejected = len(rejections)
        return result

    async def reject(self, records: Iterable[Any], reason: str) -> int:
        """Send ``records`` to ``rejected_records`` with ``reason``; returns how many."""
        rejections = [Rejection(record, reason) for record in records]
        if rejections:
            async with self.pool.acquire() as conn:
                await self._reject(conn, rejections)
        return len(rejections)

    # --- steps -----------------------------------------------------------------
    def _prepare(self, record: Any, key_values: Mapping[str, Any]) -> _Prepared:
        identifier = record_id(record)
        clean, data = serialize(record)
        key = tuple(identifier if name == "id" else key_values[name] for name in self.table.key[1:])
        return _Prepared(key, clean, data, content_hash(data))

    async def _split_by_stored_hash(
        self, conn: asyncpg.Connection, batch: dict[tuple[Any, ...], _Prepared]
    ) -> tuple[list[_Prepared], list[tuple[Any, ...]], int]:
        if not batch:
            return [], [], 0
        key_arrays = [list(column) for column in zip(*batch, strict=True)]
        stored = await conn.fetch(self.table.select_hashes, self.region, *key_arrays)
        width = len(self.spec.key)
        known = {tuple(row[:width]): (row["content_hash"], row["deleted"]) for row in stored}
        changed, unchanged, restored = [], [], 0
        for key, prepared in batch.items():
            state = known.get(key)
            if state is None:
                changed.append(prepared)
            elif state[0] == prepared.digest:
                unchanged.append(key)
                restored += state[1]
            else:
                prepared.stored = True
                changed.append(prepared)
        return changed, unchanged, restored

    def _rows(
        self,
        changed: list[_Prepared],
        defaults: Mapping[str, Any],
        rejections: list[Rejection],
    ) -> tuple[list[tuple[tuple[Any, ...], _Prepared]], set[int]]:
        rows = []
        parent_ids: set[int] = set()
        parent_ref = self.spec.parent_ref
        parent_index = self.spec.typed_column_names.index(parent_ref.column) if parent_ref else None
        for prepared in changed:
            try:
                values = self.table.reader.values(prepared.record, defaults)
            except RecordRejected as err:
                rejections.append(Rejection(prepared.record, str(err)))
                continue
            if parent_index is not None:
                parent_ids.add(values[parent_index])
            row = (self.region, *prepared.key, *values, prepared.data, prepared.digest, self.run_id)
            rows.append((row, prepared))
        return rows, parent_ids

    async def _missing_parents(self, conn: asyncpg.Connection, parent_ids: set[int]) -> set[int]:
        assert self.table.parent_check is not None
        found = await conn.fetch(self.table.parent_check, self.region, list(parent_ids))
        return parent_ids - {row["id"] for row in found}

    def _without_orphans(
        self, rows: list[tuple[tuple[Any, ...], _Prepared]], missing: set[int]
    ) -> tuple[list[tuple[tuple[Any, ...], _Prepared]], list[Mapping[str, Any]]]:
        assert self.spec.parent_ref is not None
        position = len(self.table.key) + self.spec.typed_column_names.index(
            self.spec.parent_ref.column
        )
        kept, orphaned = [], []
        for row, prepared in rows:
            if row[position] in missing:
                orphaned.append(prepared.record)
            else:
                kept.append((row, prepared))
        return kept, orphaned

    def _orphan_reason(self, record: Mapping[str, Any], defaults: Mapping[str, Any] | None) -> str:
        ref = self.spec.parent_ref
        assert ref is not None
        column = next(c for c in self.spec.columns if c.name == ref.column)
        value = ColumnReader((column,)).values(record, defaults or {})[0]
        return f"{'.'.join(column.path)} {value} is not a known {ref.entity} record of this region"

    async def _write(
        self, conn: asyncpg.Connection, rows: list[tuple[tuple[Any, ...], _Prepared]]
    ) -> tuple[int, int]:
        """Write new and changed rows; returns (new, updated).

        Rows whose key was not stored a moment ago are COPYed straight into the
        table, which saves parsing their jsonb twice; should another writer have
        inserted one of them since (a unique violation), they take the upsert path.
        """
        new_rows = [row for row, prepared in rows if not prepared.stored]
        upsert_rows = [row for row, prepared in rows if prepared.stored]
        new = 0
        if new_rows:
            try:
                async with conn.transaction():  # a savepoint
                    await conn.copy_records_to_table(
                        self.spec.table,
                        schema_name=SCHEMA,
                        records=new_rows,
                        columns=self.table.copy_columns,
                    )
                new = len(new_rows)
            except asyncpg.UniqueViolationError:
                upsert_rows.extend(new_rows)
        if not upsert_rows:
            return new, 0
        upserted_new, updated = await self._upsert(conn, upsert_rows)
        return new + upserted_new, updated

    async def _upsert(
        self, conn: asyncpg.Connection, rows: list[tuple[Any, ...]]
    ) -> tuple[int, int]:
        await conn.execute(self.table.create_staging)
        await conn.copy_records_to_table(
            self.table.staging, records=rows, columns=self.table.copy_columns
        )
        written = await conn.fetch(self.table.upsert)
        new = sum(1 for row in written if row["inserted"])
        # Rows the upsert's WHERE skipped were rewritten concurrently with equal content.
        return new, len(written) - new

    async def _touch(self, conn: asyncpg.Connection, keys: list[tuple[Any, ...]]) -> None:
        key_arrays = [list(column) for column in zip(*keys, strict=True)]
        await conn.execute(self.table.touch, self.region, *key_arrays)

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


def typed_column_sql(spec: EntitySpec) -> dict[str, str]:
    """Column name to SQL type, as the migration must declare them (checked by tests)."""
    return {column.name: column.type.value for column in spec.columns} | (
        {"tag_type": "text"} if "tag_type" in spec.key else {}
    )


__all__ = ["Loader", "LoadResult", "ColumnType", "typed_column_sql"]
