"""ASGI apps served over real HTTP on a free port of 127.0.0.1 inside the test's loop, and
``Receiver``: a webhook endpoint that records what the simulator delivers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn


class _Server(uvicorn.Server):
    """uvicorn without signal capture, with an event for "listening"."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def served_app(app: Any) -> AsyncIterator[str]:
    """``app`` (ASGI 3) over HTTP on 127.0.0.1; yields its base URL; stops on exit."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, lifespan="off", access_log=False, log_config=None, interface="asgi3"
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await asyncio.wait_for(server.ready.wait(), 10)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


class Receiver:
    """A webhook endpoint that records what it gets and answers ``status``."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.status = 200
        self.arrived = asyncio.Condition()
        self.url = ""

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        async with self.arrived:
            self.bodies.append(json.loads(raw))
            self.arrived.notify_all()
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})
