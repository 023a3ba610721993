"""Describing failures: one line for operators, and which kind of failure it is.

The kind picks the runbook remedy an alert carries (database, API, token, data).
Failures of the database arrive as ``DatabaseError``, converted once where the
daemon's connections are made (``db/connection.py``).
"""

from __future__ import annotations

import asyncio
from enum import StrEnum

from breezeway_daemon.redact import scrub_credentials


class ErrorKind(StrEnum):
    DATABASE = "database"
    API = "api"
    TOKEN = "token"
    DATA = "data"
    OTHER = "other"


class DatabaseError(Exception):
    """A database operation failed; the message is the server's (or the client's) own.

    ``connection_lost``: the connection is gone or could not be made, rather than a
    statement that failed. ``sqlstate``: PostgreSQL's error code, when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind = ErrorKind.DATABASE,
        connection_lost: bool = False,
        sqlstate: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.connection_lost = connection_lost
        self.sqlstate = sqlstate


class DatabaseUnavailable(DatabaseError):
    """The database could not be reached: connecting failed, or the network to it did."""

    def __init__(self, message: str) -> None:
        super().__init__(message, connection_lost=True)


def describe(err: BaseException) -> str:
    """``err`` as one line: its message, or its type when it has none.

    Credentials are cut out: a message may quote an API's answer, and an API may echo
    the request's token; the line goes to etl_sync_log, logs, alerts and the terminal.
    """
    text = scrub_credentials(" ".join(str(err).split()))
    if isinstance(err, asyncio.TimeoutError | TimeoutError) and not text:
        return "timed out"
    if not text:
        return type(err).__name__
    if len(text) > 1000:
        text = text[:997] + "..."
    return text


def kind_of(err: BaseException) -> ErrorKind:
    """Which runbook section an error belongs to: the kind it carries, else OTHER."""
    kind = getattr(err, "kind", None)
    return kind if isinstance(kind, ErrorKind) else ErrorKind.OTHER


def connection_lost(err: BaseException) -> bool:
    """Whether ``err`` means the connection to PostgreSQL is gone (or cannot be made),
    rather than a statement that failed."""
    return isinstance(err, DatabaseError) and err.connection_lost
