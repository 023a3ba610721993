"""Throwaway databases: created (and migrated) for one benchmark run or test session, then dropped.

The one implementation for the benchmarks and the tests. The benchmarks import it from this
folder (``python bench/<script>.py`` puts it on ``sys.path``); the tests import it as
``bench.throwaway`` (pytest puts the repository root on ``sys.path``: ``pythonpath`` in
pyproject.toml) through ``tests/support/database.py``. It needs nothing but asyncpg and the
installed ``breezeway_daemon``.

The server is the one given, else ``DATABASE_URL``'s, else 127.0.0.1:5432 as user postgres.
"""

from __future__ import annotations

import os
import secrets
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from breezeway_daemon.db import schema

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    """``DATABASE_URL`` when set, else the local server's maintenance database."""
    return os.environ.get("DATABASE_URL") or LOCAL_SERVER


def with_database(url: str, database: str) -> str:
    """``url`` with ``database`` in place of its database."""
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


async def create_database(
    label: str, *, server: str | None = None, prefix: str = "bw_bench", migrated: bool = True
) -> str:
    """A new database ``<prefix>_<label>_<pid>_<random>`` on ``server``, migrated unless told
    otherwise; returns its URL."""
    server = server or server_url()
    name = f"{prefix}_{label}_{os.getpid()}_{secrets.token_hex(3)}"
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = with_database(server, name)
    if migrated:
        conn = await asyncpg.connect(url)
        try:
            await schema.migrate(conn)
        finally:
            await conn.close()
    return url


async def drop_database(url: str, *, server: str | None = None) -> None:
    """Drop a database ``create_database`` made, whoever is still connected to it."""
    name = urlsplit(url).path.lstrip("/")
    conn = await asyncpg.connect(server or server_url())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
