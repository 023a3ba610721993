"""The asyncpg pool: bounded connects, timeouts on every statement, jsonb codecs.

Every connection is a ``db.connection.Connection``: what fails raises ``DatabaseError``.

jsonb travels in binary (COPY and parameters) as the version byte ``1`` followed
by the JSON text; the loader passes records already serialized as ``bytes``, so
nothing is encoded twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
import structlog

from breezeway_daemon.config import Settings
from breezeway_daemon.db import connection
from breezeway_daemon.errors import DatabaseError, DatabaseUnavailable

log = structlog.get_logger(__name__)

JSONB_VERSION = b"\x01"


def encode_jsonb(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return JSONB_VERSION + bytes(value)
    return JSONB_VERSION + orjson.dumps(value)


def decode_jsonb(data: bytes) -> Any:
    return orjson.loads(data[1:])


async def init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=encode_jsonb, decoder=decode_jsonb, format="binary"
    )


def server_settings(settings: Settings, application_name: str) -> dict[str, str]:
    return {
        "application_name": application_name,
        "statement_timeout": str(int(settings.db_statement_timeout_s * 1000)),
        # A crashed client must not hold a lock or a transaction open forever.
        "idle_in_transaction_session_timeout": str(int(settings.db_statement_timeout_s * 2000)),
        "timezone": "UTC",
        # Statements here touch one batch or one run: compiling them (JIT, which cost
        # estimates far above the real work of a batch can switch on) takes longer
        # than running them.
        "jit": "off",
    }


async def with_connect_retries(
    connect: Callable[[], Any], settings: Settings, what: str = "database"
) -> Any:
    """Call ``connect`` up to ``db_connect_attempts`` times with backoff; no sleep after the last."""
    attempts = settings.db_connect_attempts
    delay = 0.5
    for attempt in range(1, attempts + 1):
        try:
            return await asyncio.wait_for(connect(), settings.db_connect_timeout_s)
        except (DatabaseError, TimeoutError) as err:
            # Worth another attempt: the server is starting, restarting or out of slots,
            # or the network to it is down (a refused password is not).
            if isinstance(err, DatabaseError) and not err.connection_lost:
                raise
            # Named as the client raised it ("ConnectionRefusedError: ...").
            original = err.__cause__ if isinstance(err, DatabaseError) and err.__cause__ else err
            name = type(original).__name__
            cause = f"{name}: {original}" if str(original) else name
            if attempt == attempts:
                raise DatabaseUnavailable(
                    f"cannot connect to the {what} after {attempts} attempts: {cause}"
                ) from err
            log.warning("db_connect_retry", attempt=attempt, of=attempts, error=cause)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)
    raise AssertionError("unreachable")


async def create_pool(
    settings: Settings, *, application_name: str = "breezeway-daemon", max_size: int | None = None
) -> asyncpg.Pool:
    """A pool to ``DATABASE_URL``, or ``DatabaseUnavailable`` after bounded attempts."""
    dsn = settings.dsn()
    size = max_size or settings.db_pool_size

    async def connect() -> asyncpg.Pool:
        return await asyncpg.create_pool(
            dsn,
            connect=connection.connect,
            connection_class=connection.Connection,
            min_size=1,
            max_size=size,
            init=init_connection,
            timeout=settings.db_connect_timeout_s,
            command_timeout=settings.db_statement_timeout_s + 5,
            server_settings=server_settings(settings, application_name),
            max_inactive_connection_lifetime=300,
        )

    return await with_connect_retries(connect, settings)


async def connect(
    settings: Settings, *, application_name: str = "breezeway-daemon"
) -> asyncpg.Connection:
    """One connection outside the pool (for session-level advisory locks)."""
    dsn = settings.dsn()

    async def open_connection() -> asyncpg.Connection:
        conn = await connection.connect(
            dsn,
            timeout=settings.db_connect_timeout_s,
            command_timeout=settings.db_statement_timeout_s + 5,
            server_settings=server_settings(settings, application_name),
        )
        await init_connection(conn)
        return conn

    return await with_connect_retries(open_connection, settings)


@asynccontextmanager
async def open_pool(
    settings: Settings, application_name: str, *, max_size: int | None = None
) -> AsyncIterator[asyncpg.Pool]:
    """``create_pool`` for the length of a ``with`` block (commands that run once)."""
    pool = await create_pool(settings, application_name=application_name, max_size=max_size)
    try:
        yield pool
    finally:
        await pool.close()


@asynccontextmanager
async def open_connection(
    settings: Settings, application_name: str
) -> AsyncIterator[asyncpg.Connection]:
    """``connect`` for the length of a ``with`` block (migrations, grants)."""
    conn = await connect(settings, application_name=application_name)
    try:
        yield conn
    finally:
        await conn.close()
