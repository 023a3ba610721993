"""Migrations from empty, re-runs, concurrency, and the runbook's SQL against the schema."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import asyncpg
import pytest

from breezeway_daemon.db import schema
from breezeway_daemon.db.loader import typed_column_sql
from breezeway_daemon.entities import ENTITIES

# The operators' runbook: shared/ beside the checkout when it is there, else the copy
# kept with the tests (so a clone on its own still checks it).
_SHARED_RUNBOOK = Path(__file__).resolve().parents[2] / "shared" / "RUNBOOK.md"
RUNBOOK = (
    _SHARED_RUNBOOK if _SHARED_RUNBOOK.exists() else Path(__file__).with_name("data") / "RUNBOOK.md"
)


async def test_migrate_from_empty_then_again_does_nothing(empty_database: str) -> None:
    conn = await asyncpg.connect(empty_database)
    try:
        applied = await schema.migrate(conn)
        assert [m.version for m in applied] == [m.version for m in schema.known_migrations()]
        assert await schema.migrate(conn) == []
        count = await conn.fetchval("SELECT count(*) FROM breezeway.schema_migrations")
        assert count == len(applied)
    finally:
        await conn.close()


async def test_two_migrators_at_once_apply_each_migration_once(empty_database: str) -> None:
    first, second = await asyncpg.connect(empty_database), await asyncpg.connect(empty_database)
    try:
        results = await asyncio.gather(schema.migrate(first), schema.migrate(second))
        assert sorted(len(r) for r in results) == [0, len(schema.known_migrations())]
    finally:
        await first.close()
        await second.close()


async def test_schema_newer_than_known_is_refused(empty_database: str) -> None:
    conn = await asyncpg.connect(empty_database)
    try:
        await schema.migrate(conn)
        await conn.execute(
            "INSERT INTO breezeway.schema_migrations (version, name, checksum) VALUES (999, 'future', 'x')"
        )
        with pytest.raises(schema.SchemaTooNew, match="999"):
            await schema.migrate(conn)
    finally:
        await conn.close()


async def test_tables_declare_the_spec_column_types(pool: asyncpg.Pool) -> None:
    for spec in ENTITIES.values():
        if spec.child_tables:  # no table of its own (child tables: test_children.py)
            continue
        rows = await pool.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'breezeway' AND table_name = $1",
            spec.table,
        )
        declared = {row["column_name"]: row["data_type"] for row in rows}
        for name, sql_type in typed_column_sql(spec).items():
            assert declared.get(name) == sql_type, (spec.name, name)
        assert {"region_code", "id", "raw", "synced_at", "deleted_at"} <= set(declared)
        assert "character varying" not in declared.values()


def runbook_statements() -> list[str]:
    """Every SQL statement quoted in the runbook, with its placeholders filled."""
    text = RUNBOOK.read_text(encoding="utf-8")
    statements = re.findall(r'psql [^\n]*-c "\n?(.*?)"', text, flags=re.S)
    statements += re.findall(r"```sql\n(.*?)```", text, flags=re.S)
    filled = []
    for statement in statements:
        statement = statement.replace("{region}", "nashville").replace("{entity}", "tasks")
        for part in statement.split(";"):
            part = re.sub(r"--[^\n]*", "", part).strip()
            if part:
                filled.append(part)
    return filled


def test_runbook_has_the_statements_we_expect() -> None:
    statements = runbook_statements()
    assert len(statements) >= 14
    assert any(s.startswith("UPDATE breezeway.api_tokens") for s in statements)
    assert any(s.startswith("COPY (") for s in statements)


async def test_every_runbook_statement_runs_on_the_schema(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        for statement in runbook_statements():
            tx = conn.transaction()
            await tx.start()
            try:
                if statement.startswith("COPY ("):
                    await conn.copy_from_query(
                        statement[len("COPY (") : statement.rindex(")")], output=_Sink()
                    )
                else:
                    await conn.execute(statement)
            finally:
                await tx.rollback()


class _Sink:
    async def write(self, data: bytes) -> None:  # noqa: D102 - copy target
        pass
