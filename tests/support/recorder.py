"""The simulator with every request's token recorded: ``Recorder``, ASGI middleware around
it (which can also answer chosen requests itself), served with ``serve_recorded``; and
``record_issued_tokens``, every token the simulator issues."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from breezeway_sim import Simulator, SimulatorServer

AUTH_PATH_PREFIX = "/public/auth/"

Answer = tuple[int, bytes]
Rule = Callable[[str, str, str | None], Answer | None]
"""``(path, query string, token) -> (status, body)`` to answer a request instead of the simulator."""


@dataclass
class Seen:
    path: str
    query: str
    token: str | None


@dataclass
class Recorder:
    """ASGI middleware: records each request's path and ``Authorization: JWT`` token."""

    app: Any
    rules: list[Rule] = field(default_factory=list)
    on_request: list[Callable[[Seen], None]] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {key.decode().lower(): value.decode() for key, value in scope["headers"]}
        scheme, _, token = headers.get("authorization", "").partition(" ")
        request = Seen(
            scope["path"], scope.get("query_string", b"").decode(),
            token.strip() if scheme == "JWT" and token.strip() else None,
        )  # fmt: skip
        self.seen.append(request)
        for hook in self.on_request:
            hook(request)
        for rule in self.rules:
            answer = rule(request.path, request.query, request.token)
            if answer is not None:
                status, body = answer
                await send({"type": "http.response.start", "status": status,
                            "headers": [(b"content-type", b"application/json")]})  # fmt: skip
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def data_requests(self) -> list[Seen]:
        return [seen for seen in self.seen if not seen.path.startswith(AUTH_PATH_PREFIX)]


class _Wrapped:
    """A simulator whose ASGI app is wrapped (``SimulatorServer`` only asks for the app)."""

    def __init__(self, sim: Simulator, wrap: Callable[[Any], Any]) -> None:
        self.sim = sim
        self.wrap = wrap

    def asgi_app(self, control: bool = False) -> Any:
        return self.wrap(self.sim.asgi_app(control=control))


@asynccontextmanager
async def serve_recorded(sim: Simulator) -> AsyncIterator[tuple[SimulatorServer, Recorder]]:
    """``sim`` over HTTP with a ``Recorder`` in front of it."""
    recorders: list[Recorder] = []

    def wrap(app: Any) -> Recorder:
        recorders.append(Recorder(app))
        return recorders[-1]

    async with SimulatorServer(_Wrapped(sim, wrap), port=0) as server:  # type: ignore[arg-type]
        yield server, recorders[0]


def record_issued_tokens(sim: Simulator) -> list[str]:
    """Every access and refresh token ``sim`` issues from now on (logins and refreshes)."""
    issued: list[str] = []
    issue = sim.tokens.issue

    def recording(*args: Any, **kwargs: Any) -> dict[str, str]:
        pair = issue(*args, **kwargs)
        issued.extend(pair.values())
        return pair

    sim.tokens.issue = recording  # type: ignore[method-assign]
    return issued
