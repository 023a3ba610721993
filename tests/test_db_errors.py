"""Database failures reach the daemon as ``DatabaseError``, classified where connections
are made: its kind, whether the connection was lost, and the server's own message."""

from __future__ import annotations

import socket
import subprocess
import sys

import asyncpg
import pytest
from pydantic import SecretStr

from breezeway_daemon.config import Settings
from breezeway_daemon.db.pool import connect, create_pool
from breezeway_daemon.errors import (
    DatabaseError,
    DatabaseUnavailable,
    ErrorKind,
    connection_lost,
    describe,
    kind_of,
)


async def test_a_failed_statement_keeps_the_servers_message_and_says_its_kind(
    pool: asyncpg.Pool,
) -> None:
    with pytest.raises(DatabaseError) as caught:
        await pool.fetchval("SELECT 1 / 0")
    err = caught.value
    assert (kind_of(err), err.sqlstate, connection_lost(err)) == (ErrorKind.DATA, "22012", False)
    assert describe(err) == "division by zero"
    assert isinstance(err.__cause__, asyncpg.DivisionByZeroError)  # kept for the traceback

    with pytest.raises(DatabaseError) as caught:
        await pool.execute("SELECT * FROM breezeway.no_such_table")
    assert (kind_of(caught.value), caught.value.sqlstate) == (ErrorKind.DATABASE, "42P01")
    assert 'relation "breezeway.no_such_table" does not exist' in describe(caught.value)


async def test_a_failed_commit_and_a_transaction_on_a_closed_connection_are_database_errors(
    base_settings: Settings,
) -> None:
    conn = await connect(base_settings, application_name="bw-test-errors")
    try:
        await conn.execute("CREATE TEMP TABLE t (x int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED)")
        with pytest.raises(DatabaseError) as caught:
            async with conn.transaction():
                await conn.execute("INSERT INTO t VALUES (1), (1)")  # checked at COMMIT
        assert (kind_of(caught.value), caught.value.sqlstate) == (ErrorKind.DATA, "23505")
    finally:
        await conn.close()
    with pytest.raises(DatabaseError) as caught:
        async with conn.transaction():
            pass
    assert connection_lost(caught.value) and kind_of(caught.value) is ErrorKind.DATABASE


async def test_a_terminated_backend_is_a_lost_connection(
    pool: asyncpg.Pool, base_settings: Settings
) -> None:
    conn = await connect(base_settings, application_name="bw-test-errors")
    try:
        await pool.execute("SELECT pg_terminate_backend($1)", conn.get_server_pid())
        with pytest.raises(DatabaseError) as caught:
            await conn.fetchval("SELECT 1")
    finally:
        await conn.close()
    assert connection_lost(caught.value) and kind_of(caught.value) is ErrorKind.DATABASE


async def test_an_unreachable_server_names_the_clients_own_error(base_settings: Settings) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = base_settings.model_copy(update={
        "database_url": SecretStr(f"postgresql://postgres@127.0.0.1:{port}/x"),
        "db_connect_attempts": 2, "db_connect_timeout_s": 2})  # fmt: skip
    with pytest.raises(DatabaseUnavailable) as caught:
        await create_pool(settings)
    assert connection_lost(caught.value) and kind_of(caught.value) is ErrorKind.DATABASE
    assert describe(caught.value).startswith(
        "cannot connect to the database after 2 attempts: ConnectionRefusedError: "
    )


async def test_a_refused_password_is_not_retried(base_settings: Settings) -> None:
    settings = base_settings.model_copy(update={"db_connect_attempts": 3})
    url = base_settings.dsn().replace("postgresql://postgres@", "postgresql://no_such_role@")
    settings = settings.model_copy(update={"database_url": SecretStr(url)})
    with pytest.raises(DatabaseError) as caught:
        await create_pool(settings)
    assert not isinstance(caught.value, DatabaseUnavailable)
    assert 'role "no_such_role" does not exist' in describe(caught.value)


def test_errors_import_neither_asyncpg_nor_the_database_package() -> None:
    code = (
        "import sys, breezeway_daemon.errors as e; e.describe(ValueError('x'));"
        "print(sorted(m for m in sys.modules if m == 'asyncpg' or m.startswith('breezeway_daemon.db')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
