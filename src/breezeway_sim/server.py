"""Serve a simulator over real HTTP with uvicorn, inside the caller's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from types import TracebackType

import uvicorn

from .simulation import Simulator

__all__ = ["SimulatorServer"]


class _Server(uvicorn.Server):
    """uvicorn without signal capture, with an event for "listening"."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


class SimulatorServer:
    """An async context manager running ``sim`` on ``host:port`` (0: a free port).

    Usage:

        async with SimulatorServer(sim, host="127.0.0.1", port=0) as server:
            server.base_url  # "http://127.0.0.1:54321"

    ``port=0`` picks a free port. The server runs as a task of the current loop; leaving the block
    stops it (open keep-alive connections are closed). uvicorn's own signal handling and logging
    setup are switched off: the host process owns both. Access logs are off.
    """

    def __init__(
        self,
        sim: Simulator,
        host: str = "127.0.0.1",
        port: int = 0,
        control: bool = False,
    ) -> None:
        self.sim = sim
        self.host = host
        self.port = port
        self.control = control
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.setblocking(False)
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.sim.asgi_app(control=self.control),
            lifespan="off",
            access_log=False,
            log_config=None,
            log_level="warning",
            http="h11" if not _has_httptools() else "httptools",
            ws="none",
            timeout_graceful_shutdown=2,
            backlog=4096,
        )
        server = self._server = _Server(config)
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="breezeway-simulator")
        ready = asyncio.create_task(server.ready.wait())
        done, _ = await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            self._task.result()  # raises what stopped uvicorn
            raise RuntimeError("simulator server stopped during startup")

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            try:
                await self._task
            finally:
                self._server = self._task = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def wait(self) -> None:
        """Until the server stops by itself (it normally does not)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def __aenter__(self) -> SimulatorServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _has_httptools() -> bool:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return False
    return True
