"""Who can read what: analysts connect as members of ``breezeway_readonly``.

They read the six entity tables, the sync log, the cursors and the rejected records; they
cannot read ``api_tokens`` (valid API credentials) nor write anything. Roles belong to the
whole cluster, which test sessions share: every role made here has a unique name and is
dropped afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from breezeway_daemon.db import schema

from support.cli import run_cli
from support.simenv import write_private

READABLE = ("properties", "reservations", "tasks", "people", "supplies", "tags",
            "etl_sync_log", "sync_cursors", "rejected_records")  # fmt: skip
HIDDEN = ("api_tokens", "alert_history", "alert_listing_sizes", "schema_migrations")
WRITES = (
    "INSERT INTO breezeway.sync_cursors (region_code, entity_type, cursor_at) VALUES ('r', 'e', now())",
    "UPDATE breezeway.etl_sync_log SET sync_status = 'failed'",
    "DELETE FROM breezeway.properties",
    "TRUNCATE breezeway.rejected_records",
    "CREATE TABLE breezeway.analyst_scratch (x int)",
    "UPDATE breezeway.api_tokens SET access_token = NULL",
)


def as_user(url: str, user: str) -> str:
    """``url`` for another user (the test server trusts every connection on 127.0.0.1)."""
    parts = urlsplit(url)
    netloc = f"{user}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture
async def roles(server_url: str, database_url: str) -> AsyncIterator[Callable[..., str]]:
    """Make roles with unique names (``make("login", "IN ROLE x")``); all dropped afterwards."""
    admin = await asyncpg.connect(server_url)
    made: list[str] = []
    tag = secrets.token_hex(4)

    async def make(kind: str, options: str = "") -> str:
        name = f"bw_test_{kind}_{tag}_{len(made)}"
        await admin.execute(f'CREATE ROLE "{name}" {options}')
        made.append(name)
        return name

    try:
        yield make  # type: ignore[misc]
    finally:
        # Their grants in the session's database go first (DROP OWNED revokes them too).
        session = await asyncpg.connect(database_url)
        try:
            for name in reversed(made):
                await session.execute(f'DROP OWNED BY "{name}"')
                await admin.execute(f'DROP ROLE IF EXISTS "{name}"')
        finally:
            await session.close()
            await admin.close()


async def denied(conn: asyncpg.Connection, sql: str) -> bool:
    try:
        await conn.execute(sql)
    except asyncpg.InsufficientPrivilegeError:
        return True
    return False


async def assert_reads_only_what_it_should(conn: asyncpg.Connection) -> None:
    for table in READABLE:
        await conn.fetchval(f"SELECT count(*) FROM breezeway.{table}")
    assert [t for t in HIDDEN if not await denied(conn, f"SELECT * FROM breezeway.{t}")] == []
    assert [sql for sql in WRITES if not await denied(conn, sql)] == []


async def test_a_member_of_breezeway_readonly_reads_the_data_and_not_the_tokens(
    clean_db: asyncpg.Pool, database_url: str, server_url: str, roles
) -> None:
    # Something to read: a token row (that must stay unreadable) and a run.
    await clean_db.execute(
        "INSERT INTO breezeway.api_tokens (region_code, access_token) VALUES ('r', 'secret-token')"
    )
    await clean_db.execute(
        "INSERT INTO breezeway.etl_sync_log (region_code, entity_type, sync_status) "
        "VALUES ('r', 'tags', 'success')"
    )
    analyst = await roles("analyst", f"LOGIN IN ROLE {schema.READONLY_ROLE}")
    conn = await asyncpg.connect(as_user(database_url, analyst))
    try:
        assert await conn.fetchval("SELECT count(*) FROM breezeway.etl_sync_log") == 1
        await assert_reads_only_what_it_should(conn)
        # A table created later is not readable by the role (no default privileges).
        await clean_db.execute("CREATE TABLE IF NOT EXISTS breezeway.later_table (x int)")
        try:
            assert await denied(conn, "SELECT * FROM breezeway.later_table")
        finally:
            await clean_db.execute("DROP TABLE breezeway.later_table")
    finally:
        await conn.close()
    # The role itself cannot log in.
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
        await asyncpg.connect(as_user(database_url, schema.READONLY_ROLE))


async def test_grant_readonly_gives_a_dbas_role_the_same_access(
    clean_db: asyncpg.Pool, base_settings, database_url: str, roles, tmp_path: Path
) -> None:
    group = await roles("group", "NOLOGIN")
    analyst = await roles("analyst", f'LOGIN IN ROLE "{group}"')
    env_file = write_private(tmp_path / "breezeway.env", f"DATABASE_URL={database_url}\n")
    conn = await asyncpg.connect(as_user(database_url, analyst))
    try:
        assert await denied(conn, "SELECT * FROM breezeway.properties")  # nothing granted yet
        granted = await run_cli("grant-readonly", group, env_file=env_file)
        assert granted.code == 0, granted
        assert group in granted.stdout and "not api_tokens" in granted.stdout
        await assert_reads_only_what_it_should(conn)
        again = await run_cli("grant-readonly", group, env_file=env_file)  # idempotent
        assert again.code == 0, again
    finally:
        await conn.close()

    missing = await run_cli("grant-readonly", "bw_no_such_role_x", env_file=env_file)
    bad = await run_cli("grant-readonly", "x; drop table breezeway.tasks", env_file=env_file)
    for result, code in ((missing, 1), (bad, 2)):
        assert result.code == code and len(result.stderr.splitlines()) == 1, result
    assert "does not exist" in missing.stderr and "not a role name" in bad.stderr
    default = await run_cli("grant-readonly", env_file=env_file)  # breezeway_readonly
    assert default.code == 0 and schema.READONLY_ROLE in default.stdout, default


async def test_the_migration_runs_for_an_owner_without_createrole(server_url: str, roles) -> None:
    """The daemon may run as a plain owner of its database: the migration that makes the
    role then says so and skips, and the role's grants come later from a DBA."""
    owner = await roles("owner", "LOGIN NOCREATEROLE")
    database = f"bw_test_ro_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{database}" OWNER "{owner}"')
    url = urlunsplit(urlsplit(as_user(server_url, owner))._replace(path="/" + database))
    notices: list[str] = []
    try:
        conn = await asyncpg.connect(url)
        conn.add_log_listener(lambda _conn, message: notices.append(message.message))
        try:
            # The real migrations, the role existing already (created by the session's).
            applied = await schema.migrate(conn)
            assert [m.version for m in applied] == [m.version for m in schema.known_migrations()]
            # Migration 004 as it would run where the role does not exist yet.
            sql = next(m.sql for m in schema.known_migrations() if m.version == 4)
            absent = f"bw_test_absent_{secrets.token_hex(4)}"
            await conn.execute(sql.replace("breezeway_readonly", absent))
        finally:
            await conn.close()
        assert any(absent in notice and "grant-readonly" in notice for notice in notices), notices
        assert not await admin.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1", absent)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
