"""Helpers of the security, two-daemon and read-only-role tests.

- ``env_file_text``: an env file for the real ``breezeway-daemon`` process (CLI or serve);
- ``run_cli``: one ``breezeway-daemon`` command as a child process, its exit code and output;
- ``Recorder``: ASGI middleware around the simulator that records the token of every request
  (and can answer chosen requests itself), served with ``serve_recorded``;
- ``SmtpServer``: a real SMTP server (aiosmtpd) that requires AUTH and keeps every message;
- ``find_leaks``: which secret shows up in which output.

The daemon process itself is ``DaemonProcess`` of ``tests/daemon/conftest.py``, reused.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from breezeway_sim import Simulator, SimulatorServer

BIN = Path(sys.executable).with_name("breezeway-daemon")
CLI_TIMEOUT_S = 90.0


# --- configuration ----------------------------------------------------------------------
def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` for its user (the test server trusts every connection)."""
    parts = urlsplit(url)
    netloc = f"{parts.username or 'postgres'}:{password}@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def region_settings(
    sim: Simulator, secrets: Mapping[int, str] | None = None
) -> dict[str, dict[str, Any]]:
    """``region_N`` for company N, with its real secret unless ``secrets`` says otherwise."""
    secrets = secrets or {}
    return {
        f"region_{company.index}": {
            "client_id": company.client_id,
            "client_secret": secrets.get(company.index, company.client_secret),
            "company_id": company.company_id,
        }
        for company in sim.companies
    }


def env_file_text(
    database_url: str,
    api_base_url: str,
    state_dir: Path,
    regions: Mapping[str, Mapping[str, Any]],
    **settings: Any,
) -> str:
    """An env file; batches run when a test signals (SIGUSR1), never by the clock."""
    lines = [
        f"DATABASE_URL={database_url}",
        f"BREEZEWAY_API_BASE_URL={api_base_url}",
        f"BREEZEWAY_STATE_DIR={state_dir}",
        "BREEZEWAY_REQUESTS_PER_MINUTE=100000",
        "BREEZEWAY_MAX_IN_FLIGHT_PER_CREDENTIAL=8",
        "BREEZEWAY_HEARTBEAT_S=1",
        "BREEZEWAY_HTTP_TIMEOUT_S=5",
        "BREEZEWAY_HTTP_RETRY_BUDGET_S=10",
        "BREEZEWAY_HOURLY_CRON=0 0 1 1 *",
        "BREEZEWAY_DAILY_CRON=0 0 1 1 *",
    ]
    for name, config in regions.items():
        prefix = f"BREEZEWAY_REGIONS__{name.upper()}__"
        lines += [f"{prefix}{key.upper()}={value}" for key, value in config.items()]
    lines += [f"BREEZEWAY_{key.upper()}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


# --- the command ------------------------------------------------------------------------
def process_env(**extra: str) -> dict[str, str]:
    """This process's environment without any breezeway setting (the env file decides)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.upper().startswith(("BREEZEWAY_", "DATABASE_URL"))
    }
    env.pop("JOURNAL_STREAM", None)
    env.update(extra)
    return env


@dataclass
class CliResult:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"{' '.join(self.args)}: exit {self.code}\n{self.stdout}\n{self.stderr}"


async def run_cli(
    *args: str, env_file: Path | None = None, env: Mapping[str, str] | None = None
) -> CliResult:
    """``breezeway-daemon ARGS`` with ``env_file`` (or the given environment)."""
    environ = process_env(**(env or {}))
    if env_file is not None:
        environ["BREEZEWAY_ENV_FILE"] = str(env_file)
    proc = await asyncio.create_subprocess_exec(
        str(BIN), *args, env=environ,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(CLI_TIMEOUT_S):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"breezeway-daemon {' '.join(args)} did not end") from None
    assert proc.returncode is not None
    return CliResult(
        args, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    )


# --- the simulator, with every request's token recorded -----------------------------------
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


# --- a mail server that requires a password ---------------------------------------------
@dataclass
class Mailbox:
    raw: list[bytes] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmtpServer:
    """aiosmtpd in its own thread; AUTH (without TLS) with one user and password."""

    def __init__(self, user: str, password: str) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.mailbox = mailbox = Mailbox()

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                with mailbox.lock:
                    mailbox.raw.append(envelope.original_content or envelope.content)
                return "250 OK"

        def authenticate(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> Any:
            login = data.login.decode() if isinstance(data.login, bytes) else str(data.login)
            secret = data.password.decode() if isinstance(data.password, bytes) else data.password
            with mailbox.lock:
                mailbox.logins.append((login, secret))
            return AuthResult(success=login == user and secret == password)

        self.port = _free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                     authenticator=authenticate, auth_require_tls=False)  # fmt: skip

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def messages(self) -> list[str]:
        with self.mailbox.lock:
            return [raw.decode(errors="replace") for raw in self.mailbox.raw]


# --- leaks ------------------------------------------------------------------------------
def needles(secret: str) -> list[str]:
    """What would betray ``secret``: itself and, for a JWT, its claims or its signature
    alone (a cut-off token is a leak too; the header is the same in every token)."""
    found = [secret]
    parts = secret.split(".")
    if len(parts) == 3:
        found += [part for part in parts[1:] if len(part) >= 20]
    return found


def find_leaks(outputs: Mapping[str, str], secrets: Mapping[str, str]) -> list[str]:
    """``"<secret name> in <output name>"`` for every secret found in an output."""
    leaks = []
    for output, text in outputs.items():
        for name, secret in secrets.items():
            if any(needle in text for needle in needles(secret)):
                leaks.append(f"{name} in {output}")
    return leaks
