"""Running the real daemon process: its stdout events and its sd_notify messages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from breezeway_sim import Simulator, SimulatorServer

from simenv import SimEnv, env_file_text

BIN = Path(sys.executable).with_name("breezeway-daemon")
WAIT_S = 60.0


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET; keeps every message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._arrived = asyncio.Condition()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 65536)
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            async with self._arrived:
                self.messages.append((loop.time(), fields))
                self._arrived.notify_all()

    async def wait_for(self, match: Callable[[dict[str, str]], bool], after: int = 0) -> int:
        """Index of the first message from ``after`` on that matches."""
        async with asyncio.timeout(WAIT_S):
            async with self._arrived:
                while True:
                    for index in range(after, len(self.messages)):
                        if match(self.messages[index][1]):
                            return index
                    await self._arrived.wait()

    def close(self) -> None:
        self._reader.cancel()
        self.sock.close()


class DaemonProcess:
    """``breezeway-daemon serve`` as a child process, with its JSON log events."""

    def __init__(self, env_file: Path, notify: NotifySocket, extra_env: dict[str, str]) -> None:
        self.env_file = env_file
        self.notify = notify
        self.extra_env = extra_env
        self.events: list[dict[str, Any]] = []
        self.raw_lines: list[str] = []
        self._arrived = asyncio.Condition()
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("BREEZEWAY_", "DATABASE_URL"))
        }
        env.update(
            BREEZEWAY_ENV_FILE=str(self.env_file),
            NOTIFY_SOCKET=str(self.notify.path),
            WATCHDOG_USEC="2000000",
            **self.extra_env,
        )
        env.pop("JOURNAL_STREAM", None)
        self.proc = await asyncio.create_subprocess_exec(
            str(BIN),
            "serve",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            self.raw_lines.append(line)
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "unparsed", "line": line}
            async with self._arrived:
                self.events.append(event)
                self._arrived.notify_all()

    async def wait_event(self, name: str, after: int = 0, **fields: Any) -> int:
        """Index of the first log event called ``name`` (with ``fields``) from ``after`` on."""
        try:
            return await self._wait_event(name, after, **fields)
        except TimeoutError:
            raise AssertionError(f"no {name} event; last lines: {self.raw_lines[-15:]}") from None

    async def _wait_event(self, name: str, after: int = 0, **fields: Any) -> int:
        async with asyncio.timeout(WAIT_S):
            async with self._arrived:
                while True:
                    for index in range(after, len(self.events)):
                        event = self.events[index]
                        if event.get("event") == name and all(
                            event.get(k) == v for k, v in fields.items()
                        ):
                            return index
                    if self.proc is not None and self.proc.returncode is not None:
                        raise AssertionError(
                            f"daemon exited while waiting for {name}: {self.raw_lines[-20:]}"
                        )
                    await self._arrived.wait()

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait_exit(self, within_s: float) -> int:
        assert self.proc is not None
        async with asyncio.timeout(within_s):
            code = await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._reader, 5)
        return code

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()


DAEMON_DEFAULTS: dict[str, str] = {
    "requests_per_minute": "100000",
    "heartbeat_s": "1",
    "http_timeout_s": "5",
    "http_retry_budget_s": "20",
    # Far from now: batches run when a test asks (SIGUSR1), not by the clock.
    "hourly_cron": "0 0 1 1 *",
    "daily_cron": "0 0 1 1 *",
}


def env_lines(sim_env: SimEnv, **settings: str) -> str:
    """The daemon's env file for ``sim_env``, with ``settings`` over the test defaults."""
    values = {"state_dir": str(sim_env.settings.state_dir), **DAEMON_DEFAULTS, **settings}
    return env_file_text(sim_env, **values)


@pytest.fixture
async def notify_socket(tmp_path: Path) -> AsyncIterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


@pytest.fixture
async def daemon_factory(
    sim_env: SimEnv, notify_socket: NotifySocket, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    """Start daemons on ``sim_env``; each is killed at the end of the test."""
    started: list[DaemonProcess] = []
    env_file = tmp_path / "breezeway.env"

    async def start(extra_env: dict[str, str] | None = None, **settings: str) -> DaemonProcess:
        if not env_file.exists() or settings:
            env_file.write_text(env_lines(sim_env, **settings))
            env_file.chmod(0o600)
        daemon = DaemonProcess(env_file, notify_socket, extra_env or {})
        await daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        await daemon.kill()


__all__ = ["DaemonProcess", "NotifySocket", "Simulator", "SimulatorServer"]
