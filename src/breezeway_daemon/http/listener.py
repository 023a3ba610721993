"""The daemon's HTTP listener: a Starlette app served by uvicorn in the daemon's event loop.

``Listener`` binds ``BREEZEWAY_HTTP_LISTEN`` itself (so that an address in use is a
clear start-up error, before ``READY=1``), serves whatever routes were added with
``add_route`` (``/metrics`` and ``/healthz``; other features add theirs, before or
after the start) and stops on ``stop``. uvicorn's signal handling, logging set-up
and once-a-tenth-of-a-second housekeeping loop are left out: the daemon owns its
signals and logging, and an idle listener should cost nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Collection, Iterator
from typing import Any

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from breezeway_daemon.http import ListenerError
from breezeway_daemon.http.address import ListenAddress

log = structlog.get_logger(__name__)

GRACEFUL_STOP_S = 3.0
MAX_CONNECTIONS = 64


class _Server(uvicorn.Server):
    """uvicorn without signal capture, and without its polling main loop."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()
        self.exit_requested = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.listening.set()

    async def main_loop(self) -> None:
        await self.exit_requested.wait()


class Listener:
    """An HTTP server on ``address``; routes are added with ``add_route``."""

    def __init__(self, address: ListenAddress) -> None:
        self.address = address
        self.app = Starlette()
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self._cleanups: list[Callable[[], Awaitable[None]]] = []

    def add_route(
        self, path: str, endpoint: Callable[..., Any], methods: Collection[str] = ("GET",)
    ) -> None:
        """Serve ``endpoint`` (a Starlette endpoint) at ``path``; works while running too."""
        self.app.router.routes.append(Route(path, endpoint, methods=list(methods)))

    def stop_with(self, cleanup: Callable[[], Awaitable[None]]) -> None:
        """Await ``cleanup()`` when the listener stops (after the server), last added first."""
        self._cleanups.append(cleanup)

    @property
    def bound(self) -> ListenAddress:
        """The address actually listened on (the port chosen when 0 was asked for)."""
        if self._socket is None:
            return self.address
        return ListenAddress(self.address.host, self._socket.getsockname()[1])

    async def start(self) -> None:
        self._socket = self._bind()
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            access_log=False,
            log_config=None,
            log_level="warning",
            http="h11",
            ws="none",
            server_header=False,
            date_header=False,
            limit_concurrency=MAX_CONNECTIONS,
            timeout_graceful_shutdown=GRACEFUL_STOP_S,
        )
        server = self._server = _Server(config)
        self._task = asyncio.get_running_loop().create_task(
            server.serve(sockets=[self._socket]), name="breezeway-http"
        )
        listening = asyncio.ensure_future(server.listening.wait())
        done, _ = await asyncio.wait({listening, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if listening not in done:
            listening.cancel()
            self._close_socket()
            raise ListenerError(f"BREEZEWAY_HTTP_LISTEN: the listener on {self.address} stopped "
                                "while starting")  # fmt: skip
        log.info("http_listening", address=str(self.bound))

    def _bind(self) -> socket.socket:
        host, port = self.address.host, self.address.port
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, kind, proto, _, sockaddr = infos[0]
            sock = socket.socket(family, kind, proto)
        except OSError as err:
            raise ListenerError(
                f"BREEZEWAY_HTTP_LISTEN: cannot listen on {self.address}: {err.strerror or err}"
            ) from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            sock.setblocking(False)
        except OSError as err:
            sock.close()
            raise ListenerError(
                f"BREEZEWAY_HTTP_LISTEN: cannot listen on {self.address}: {err.strerror or err}"
            ) from None
        return sock

    async def stop(self) -> None:
        """Stop accepting, let answers in progress finish (briefly), close."""
        server, task = self._server, self._task
        self._server = self._task = None
        if server is not None and task is not None:
            server.should_exit = True
            server.exit_requested.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, GRACEFUL_STOP_S + 2)
            log.info("http_stopped")
        for cleanup in reversed(self._cleanups):
            await cleanup()
        self._cleanups.clear()
        self._close_socket()

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
