"""The schema migration runner: the numbered ``.sql`` files of ``migrations/`` (shipped
as ``breezeway_daemon.migrations``), applied in order, each once.

Each migration runs in its own transaction and is recorded in
``breezeway.schema_migrations``. A session advisory lock serialises migrators,
so two processes starting at once do not collide; the second finds nothing to do.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg
import structlog

log = structlog.get_logger(__name__)

MIGRATION_LOCK_KEY = 0x6272_6565_7A65  # "breeze": one lock for all migrators of a database
FILE_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


class SchemaTooNew(Exception):
    """The database has migrations this version does not know: refuse to run on it."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def known_migrations() -> list[Migration]:
    """The migrations shipped with this package, in order."""
    found = []
    for entry in resources.files("breezeway_daemon.migrations").iterdir():
        match = FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError("two migrations share a version number")
    return found


async def applied_versions(conn: asyncpg.Connection) -> set[int]:
    exists = await conn.fetchval("SELECT to_regclass('breezeway.schema_migrations') IS NOT NULL")
    if not exists:
        return set()
    return {
        row["version"]
        for row in await conn.fetch("SELECT version FROM breezeway.schema_migrations")
    }


async def check_schema_version(conn: asyncpg.Connection) -> None:
    """Raise ``SchemaTooNew`` when the database is ahead of this version."""
    newest_known = max(migration.version for migration in known_migrations())
    unknown = sorted(version for version in await applied_versions(conn) if version > newest_known)
    if unknown:
        raise SchemaTooNew(
            f"database schema is at migration {unknown[-1]}, newer than this version knows "
            f"({newest_known}); upgrade breezeway-daemon"
        )


async def migrate(conn: asyncpg.Connection) -> list[Migration]:
    """Apply every migration not yet applied; return those applied now."""
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(
            """
            CREATE SCHEMA IF NOT EXISTS breezeway;
            CREATE TABLE IF NOT EXISTS breezeway.schema_migrations (
                version     integer     PRIMARY KEY,
                name        text        NOT NULL,
                checksum    text        NOT NULL,
                applied_at  timestamptz NOT NULL DEFAULT now()
            );
            """
        )
        await check_schema_version(conn)
        done = await applied_versions(conn)
        applied = []
        for migration in known_migrations():
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO breezeway.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            log.info("migration_applied", version=migration.version, name=migration.name)
            applied.append(migration)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


# --- the read-only role (migration 004 and ``breezeway-daemon grant-readonly``) -----------
READONLY_ROLE = "breezeway_readonly"
READONLY_TABLES = (
    "properties", "reservations", "tasks", "people", "supplies", "tags",
    "etl_sync_log", "sync_cursors", "rejected_records",
    # migration 005: child tables and the task details' fetch record
    "property_photos", "reservation_guests", "task_assignments", "task_photos", "task_tags",
    "task_costs", "task_supplies", "task_comments", "task_requirements", "task_details_fetches",
)  # fmt: skip
"""What analysts read: never ``api_tokens`` (valid API credentials), nor the alert tables."""
ROLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")


class RoleMissing(Exception):
    """The role to grant to does not exist (roles are created by a DBA, cluster-wide)."""


async def grant_readonly(conn: asyncpg.Connection, role: str = READONLY_ROLE) -> list[str]:
    """(Re)apply migration 004's grants to ``role``; returns the tables it can read."""
    if not ROLE_NAME.fullmatch(role):
        raise ValueError(f"{role[:80]!r} is not a role name (letters, digits, _ and $)")
    if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role):
        raise RoleMissing(f"role {role!r} does not exist: CREATE ROLE {role} NOLOGIN first")
    ident = await conn.fetchval("SELECT quote_ident($1)", role)  # the name, quoted by the server
    async with conn.transaction():
        await conn.execute(f"GRANT USAGE ON SCHEMA breezeway TO {ident}")
        for table in READONLY_TABLES:
            await conn.execute(f"GRANT SELECT ON breezeway.{table} TO {ident}")
        await conn.execute(f"REVOKE ALL ON breezeway.api_tokens FROM {ident}")
    log.info("readonly_grants_applied", role=role, tables=list(READONLY_TABLES))
    return list(READONLY_TABLES)
