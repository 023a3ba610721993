"""Describing failures: one line for operators, and which kind of failure it is.

The kind picks the runbook remedy an alert carries (database, API, token, data).
"""

from __future__ import annotations

import asyncio
from enum import StrEnum


class ErrorKind(StrEnum):
    DATABASE = "database"
    API = "api"
    TOKEN = "token"
    DATA = "data"
    OTHER = "other"


def describe(err: BaseException) -> str:
    """``err`` as one line: its message, or its type when it has none.

    Credentials are cut out: a message may quote an API's answer, and an API may echo
    the request's token; the line goes to etl_sync_log, logs, alerts and the terminal.
    """
    from breezeway_daemon.redact import scrub_credentials

    text = scrub_credentials(" ".join(str(err).split()))
    if isinstance(err, asyncio.TimeoutError | TimeoutError) and not text:
        return "timed out"
    if not text:
        return type(err).__name__
    if len(text) > 1000:
        text = text[:997] + "..."
    return text


def kind_of(err: BaseException) -> ErrorKind:
    """Which runbook section an error belongs to."""
    import asyncpg

    from breezeway_daemon.db.pool import DatabaseUnavailable

    kind = getattr(err, "kind", None)
    if isinstance(kind, ErrorKind):
        return kind
    if connection_lost(err):
        return ErrorKind.DATABASE
    if isinstance(
        err, DatabaseUnavailable | asyncpg.PostgresConnectionError | asyncpg.InterfaceError
    ):
        return ErrorKind.DATABASE
    if isinstance(err, asyncpg.IntegrityConstraintViolationError | asyncpg.DataError):
        return ErrorKind.DATA
    if isinstance(err, asyncpg.PostgresError | OSError) and "connect" in str(err).lower():
        return ErrorKind.DATABASE
    if isinstance(err, asyncpg.PostgresError):
        return ErrorKind.DATABASE
    return ErrorKind.OTHER


def connection_lost(err: BaseException) -> bool:
    """Whether ``err`` means the connection to PostgreSQL is gone (or cannot be made),
    rather than a statement that failed."""
    import asyncpg

    from breezeway_daemon.db.pool import DatabaseUnavailable

    if isinstance(err, asyncpg.InterfaceError | asyncpg.InternalClientError):
        # "another operation ... is in progress": a pooled connection whose backend was
        # terminated, met while it still reads the server's goodbye (nothing here uses
        # a connection from two tasks at once).
        return "closed" in str(err) or "another operation" in str(err)
    if isinstance(err, OSError):
        return not isinstance(err, TimeoutError)  # sockets; a timeout is no proof
    return isinstance(
        err,
        asyncpg.PostgresConnectionError
        | asyncpg.AdminShutdownError
        | asyncpg.CrashShutdownError
        | asyncpg.CannotConnectNowError
        | asyncpg.TooManyConnectionsError
        | DatabaseUnavailable,
    )
