"""The real daemon: ``breezeway-daemon serve`` as a child process, its stdout events and
its sd_notify messages; ``DaemonEnv`` starts daemons on a served simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.cli import BIN, process_env
from support.simenv import SimEnv, write_private

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
        env = process_env(
            BREEZEWAY_ENV_FILE=str(self.env_file),
            NOTIFY_SOCKET=str(self.notify.path),
            WATCHDOG_USEC="2000000",
            **self.extra_env,
        )
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

    async def wait_until(self, done: Callable[[list[dict[str, Any]]], bool]) -> None:
        """Until ``done(events)`` holds for the log events so far (or the daemon exits)."""
        async with asyncio.timeout(WAIT_S), self._arrived:
            while not done(self.events):
                if self.proc is not None and self.proc.returncode is not None:
                    return
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


def rss_kib(pid: int) -> int:
    """The process's resident set size (VmRSS) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def extra_env_from_environment() -> dict[str, str]:
    """``BREEZEWAY_DAEMON_ENV`` as variables for the daemon, for experiments (e.g.
    ``BREEZEWAY_DAEMON_ENV="MALLOC_ARENA_MAX=1 PYTHONMALLOC=malloc"``)."""
    return dict(
        item.split("=", 1)
        for item in os.environ.get("BREEZEWAY_DAEMON_ENV", "").split()
        if "=" in item
    )


@dataclass
class DaemonEnv(SimEnv):
    """A served simulator for daemons on one env file (each daemon killed by ``close``)."""

    notify: NotifySocket
    env_file: Path
    started: list[DaemonProcess] = field(default_factory=list)

    async def spawn(
        self, extra_env: Mapping[str, str] | None = None, **settings: object
    ) -> DaemonProcess:
        """``breezeway-daemon serve`` on this simulator, not yet ready. The env file is
        (re)written with ``settings`` over the defaults when given or when there is none."""
        if settings or not self.env_file.exists():
            write_private(self.env_file, self.daemon_env_file_text(**settings))
        daemon = DaemonProcess(self.env_file, self.notify, dict(extra_env or {}))
        await daemon.start()
        self.started.append(daemon)
        return daemon

    async def start(self, **settings: object) -> DaemonProcess:
        """Spawn a daemon (with ``BREEZEWAY_DAEMON_ENV``'s variables); returns once it is ready."""
        daemon = await self.spawn(extra_env_from_environment(), **settings)
        await daemon.wait_event("daemon_ready")
        return daemon

    async def close(self) -> None:
        for daemon in self.started:
            await daemon.kill()
