"""One entity's table: its SQL, built once from the entity's spec, and the COPY writes.

New rows are COPYed (binary, jsonb already serialized) straight into the table;
changed rows into a temporary staging table, from which one
``INSERT ... ON CONFLICT DO UPDATE`` rewrites them.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from breezeway_daemon.entities import EntitySpec
from breezeway_daemon.records import column_reader

SCHEMA = "breezeway"
BOOKKEEPING = ("raw", "content_hash", "last_run_id")
KEY_TYPES = {"id": "bigint", "tag_type": "text"}


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
        self.upsert_statement = (
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

    async def copy_new(self, conn: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> None:
        """COPY rows whose key is not stored straight into the table."""
        await conn.copy_records_to_table(
            self.spec.table, schema_name=SCHEMA, records=rows, columns=self.copy_columns
        )

    async def upsert(
        self, conn: asyncpg.Connection, region: str, rows: list[tuple[Any, ...]], fixed: list[Any]
    ) -> tuple[int, int, int, set[int]]:
        """Write rows through the staging table; returns (new, updated, unchanged) and the
        ids of the rows written (an older version of a row is skipped, not written)."""
        await conn.execute(self.create_staging)
        await conn.copy_records_to_table(self.staging, records=rows, columns=self.copy_columns)
        written = await conn.fetch(self.upsert_statement)
        new = sum(1 for row in written if row["inserted"])
        skipped = len(rows) - len(written)
        done = {row["id"] for row in written}
        if skipped:
            # The upsert's WHERE skipped rows another writer stored meanwhile with
            # the same content: they are unchanged, and were received now.
            id_position = len(self.key) - 1
            same = [row[id_position] for row in rows if row[id_position] not in done]
            await conn.execute(self.touch, region, same, *fixed)
        return new, len(written) - new, skipped, done

    async def missing_parents(
        self, conn: asyncpg.Connection, region: str, parent_ids: set[int]
    ) -> set[int]:
        """Which of ``parent_ids`` name no record of the parent entity in ``region``."""
        assert self.parent_check is not None
        found = await conn.fetch(self.parent_check, region, list(parent_ids))
        return parent_ids - {row["id"] for row in found}


_TABLES: dict[str, EntityTable] = {}


def entity_table(spec: EntitySpec) -> EntityTable:
    """The ``EntityTable`` of ``spec``, built on first use."""
    table = _TABLES.get(spec.name)
    if table is None or table.spec is not spec:
        table = _TABLES[spec.name] = EntityTable(spec)
    return table


def typed_column_sql(spec: EntitySpec) -> dict[str, str]:
    """Column name to SQL type, as the migration must declare them (checked by tests)."""
    return {column.name: column.type.value for column in spec.columns} | (
        {"tag_type": "text"} if "tag_type" in spec.key else {}
    )
