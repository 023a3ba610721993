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
