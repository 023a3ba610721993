"""The benchmarks' throwaway databases: created and migrated for one run, then dropped.

The server is ``DATABASE_URL``'s when it is set, else 127.0.0.1:5432 as user postgres.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from breezeway_daemon.db import schema  # noqa: E402

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    return os.environ.get("DATABASE_URL") or LOCAL_SERVER


async def create_database(label: str) -> str:
    """A new database named after ``label``, migrated; returns its URL."""
    server = server_url()
    name = f"bw_bench_{label}_{os.getpid()}_{secrets.token_hex(3)}"
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = urlunsplit(urlsplit(server)._replace(path="/" + name))
    conn = await asyncpg.connect(url)
    try:
        await schema.migrate(conn)
    finally:
        await conn.close()
    return url


async def drop_database(url: str) -> None:
    """Drop a database ``create_database`` made, whoever is still connected to it."""
    name = urlsplit(url).path.lstrip("/")
    conn = await asyncpg.connect(server_url())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
