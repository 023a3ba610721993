"""The connection class of every pool and connection the daemon opens (see ``db/pool.py``).

Its statements and transactions raise the project's ``DatabaseError`` (``errors.py``)
with the same message, never asyncpg's or a socket's own errors: they are
classified here, once, and nowhere else.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import asyncpg
import asyncpg.transaction

from breezeway_daemon.errors import DatabaseError, DatabaseUnavailable, ErrorKind

P = ParamSpec("P")
T = TypeVar("T")

# What the client raises: server errors, its own errors, socket errors. Timeouts
# (``TimeoutError`` is an ``OSError``) stay timeouts: they prove nothing about the server.
CLIENT_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)

# Server errors that mean the connection is gone, or cannot be made now.
CONNECTION_GONE = (
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


def database_error(err: Exception) -> DatabaseError:
    """``err`` from asyncpg or a socket as the project's error, its message unchanged."""
    if isinstance(err, DatabaseError):
        return err
    message = str(err) or type(err).__name__
    if isinstance(err, OSError):
        return DatabaseUnavailable(message)
    if isinstance(err, asyncpg.PostgresError):
        sqlstate = err.sqlstate
        if isinstance(err, asyncpg.IntegrityConstraintViolationError | asyncpg.DataError):
            return DatabaseError(message, kind=ErrorKind.DATA, sqlstate=sqlstate)
        lost = isinstance(err, CONNECTION_GONE)
        return DatabaseError(message, connection_lost=lost, sqlstate=sqlstate)
    # asyncpg's own errors name a connection that closed under them only in their message;
    # "another operation is in progress": a pooled connection whose backend was terminated,
    # met while it still reads the server's goodbye (no connection is shared by two tasks).
    lost = "closed" in message or "another operation" in message
    # Other internal errors of the client prove nothing about the database.
    unknown = isinstance(err, asyncpg.InternalClientError) and not lost
    kind = ErrorKind.OTHER if unknown else ErrorKind.DATABASE
    return DatabaseError(message, kind=kind, connection_lost=lost)


@contextmanager
def database_errors() -> Iterator[None]:
    """Raise what the client raises inside the block as ``DatabaseError``."""
    try:
        yield
    except CLIENT_ERRORS as err:
        if isinstance(err, TimeoutError):
            raise
        raise database_error(err) from err


def converting(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """``method`` of a connection, its failures raised as ``DatabaseError``."""

    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        with database_errors():
            return await method(*args, **kwargs)

    return call


class Transaction(asyncpg.transaction.Transaction):
    """asyncpg's transaction block; leaving it on a lost connection raises a ``DatabaseError``."""

    __slots__ = ()

    async def __aenter__(self) -> None:
        with database_errors():
            await super().__aenter__()

    async def __aexit__(self, *exc_info: Any) -> None:
        with database_errors():
            await super().__aexit__(*exc_info)


# The methods that reach the server (``reset`` too: the pool calls it on release).
CONVERTED_METHODS = (
    "execute", "executemany", "fetch", "fetchrow", "fetchval", "fetchmany", "prepare",
    "copy_records_to_table", "copy_to_table", "copy_from_table", "copy_from_query",
    "set_type_codec", "reset",
)  # fmt: skip


class Connection(asyncpg.Connection):
    """An asyncpg connection whose ``CONVERTED_METHODS`` and transactions raise
    ``DatabaseError``."""

    def transaction(
        self, *, isolation: str | None = None, readonly: bool = False, deferrable: bool = False
    ) -> Transaction:
        with database_errors():  # asyncpg's checks: an open connection, valid options
            super().transaction(isolation=isolation, readonly=readonly, deferrable=deferrable)
        return Transaction(self, isolation, readonly, deferrable)


for _name in CONVERTED_METHODS:
    setattr(Connection, _name, converting(getattr(asyncpg.Connection, _name)))


async def connect(*args: Any, **kwargs: Any) -> Connection:
    """``asyncpg.connect`` opening a ``Connection`` (also the pools' way to connect); what
    it raises, as ``DatabaseError``."""
    kwargs.setdefault("connection_class", Connection)
    with database_errors():
        return await asyncpg.connect(*args, **kwargs)
