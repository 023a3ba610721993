"""The daemon as a process with its HTTP listener on, and reading what it serves.

- ``ServedDaemon``: ``breezeway-daemon serve`` as a child process; its JSON log events,
  the listener's URL (from its ``http_listening`` event), ``scrape()`` of ``/metrics``
  parsed with prometheus_client's own text parser, ``healthz()``;
- ``Scrape``: the parsed families, with ``value(name, **labels)`` and ``names()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from breezeway_daemon import journal

from simenv import SimEnv, env_file_text

BIN = Path(sys.executable).with_name("breezeway-daemon")
WAIT_S = 60.0
PRIORITY_PREFIX = re.compile(r"<(\d)>")
# Batches run when a test signals (SIGUSR1), never by the clock.
DEFAULTS = {
    "http_listen": "127.0.0.1:0",
    "requests_per_minute": "100000",
    "heartbeat_s": "1",
    "http_timeout_s": "5",
    "http_retry_budget_s": "10",
    "hourly_cron": "0 0 1 1 *",
    "daily_cron": "0 0 1 1 *",
}


@dataclass
class Scrape:
    """One ``/metrics`` answer, parsed."""

    families: dict[str, Any]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        return cls({family.name: family for family in text_string_to_metric_families(text)})

    def samples(self, name: str, **labels: str) -> list[Any]:
        """Samples called ``name`` (``..._total``, ``..._bucket``) whose labels include ``labels``."""
        return [
            sample
            for family in self.families.values()
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float | None:
        """The sum of the matching samples; None when there is none."""
        found = self.samples(name, **labels)
        return sum(sample.value for sample in found) if found else None

    def names(self) -> set[str]:
        """Every name a query may use: families, their samples, and the names a family of
        its type is queried by even before its first sample (``_total``, ``_bucket``...)."""
        names: set[str] = set()
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
        for family in self.families.values():
            names.add(family.name)
            names.update(sample.name for sample in family.samples)
            names.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
        return names


class ServedDaemon:
    """``breezeway-daemon serve`` as a child process with its HTTP listener on."""

    def __init__(self, env_file: Path, extra_env: dict[str, str] | None = None) -> None:
        """``extra_env``: variables for the process beside ``BREEZEWAY_ENV_FILE``."""
        self.env_file = env_file
        self.extra_env = extra_env or {}
        self.events: list[dict[str, Any]] = []
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self.output_ended = False
        self._arrived = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def start(self, journal_socket: Path | None = None) -> None:
        """Start ``serve``. With ``journal_socket``, as systemd does with the journal: stdout
        a pipe that ``JOURNAL_STREAM`` names, the journal's socket at ``journal_socket``."""
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("BREEZEWAY_", "DATABASE_URL"))
        }
        env.pop("JOURNAL_STREAM", None)
        env.pop("NOTIFY_SOCKET", None)
        env.update(BREEZEWAY_ENV_FILE=str(self.env_file), **self.extra_env)
        read_end, write_end = os.pipe()
        if journal_socket is not None:
            st = os.fstat(write_end)
            env.update(JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
            env[journal.SOCKET_ENV] = str(journal_socket)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                str(BIN), "serve", env=env, stdout=write_end, stderr=write_end
            )
        finally:
            os.close(write_end)
        stdout = asyncio.StreamReader()
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stdout), os.fdopen(read_end, "rb")
        )
        self._reader = asyncio.get_running_loop().create_task(self._read(stdout))

    async def ready(self) -> None:
        """Until the daemon is ready; then ``url`` is its listener's."""
        listening = self.events[await self.wait_event("http_listening")]
        self.url = f"http://{listening['address']}"
        await self.wait_event("daemon_ready")

    async def _read(self, stdout: asyncio.StreamReader) -> None:
        """Each line's event; a ``<N>`` priority prefix (under systemd) kept as ``_priority``."""
        try:
            async for raw in stdout:
                line = raw.decode(errors="replace").strip()
                prefix = PRIORITY_PREFIX.match(line)
                try:
                    event = json.loads(line[prefix.end() :] if prefix else line)
                except json.JSONDecodeError:
                    event = {"event": "unparsed", "line": line}
                if prefix:
                    event["_priority"] = int(prefix[1])
                async with self._arrived:
                    self.events.append(event)
                    self._arrived.notify_all()
        finally:
            self.output_ended = True
            async with self._arrived:
                self._arrived.notify_all()

    async def wait_event(self, name: str, after: int = 0, **fields: Any) -> int:
        """Index of the first event called ``name`` (with ``fields``) from ``after`` on."""

        def found() -> int | None:
            for index in range(after, len(self.events)):
                event = self.events[index]
                if event.get("event") == name and all(event.get(k) == v for k, v in fields.items()):
                    return index
            return None

        try:
            async with asyncio.timeout(WAIT_S), self._arrived:
                while (index := found()) is None:
                    if self.output_ended:
                        raise AssertionError(
                            f"daemon exited waiting for {name}: {self.events[-10:]}"
                        )
                    await self._arrived.wait()
                return index
        except TimeoutError:
            raise AssertionError(f"no {name} event; last: {self.events[-10:]}") from None

    async def get(self, path: str, **headers: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            return await client.get(path, headers=headers)

    async def scrape(self) -> Scrape:
        response = await self.get("/metrics")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        return Scrape.parse(response.text)

    async def until_scraped(self, name: str, **labels: str) -> Scrape:
        """Scrape (every 0.1 s) until a sample ``name`` with ``labels`` is there: for what the
        daemon does after its last log event (a batch's alerts follow ``batch_finished``)."""
        async with asyncio.timeout(WAIT_S):
            while not (scrape := await self.scrape()).samples(name, **labels):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        return scrape

    async def healthz(self) -> tuple[int, dict[str, Any]]:
        response = await self.get("/healthz")
        return response.status_code, response.json()

    async def until_healthz(self, status: int, within_s: float) -> float:
        """Poll ``/healthz`` (every 0.2 s) until it answers ``status``; the seconds it took."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        async with asyncio.timeout(within_s):
            # Polled, as a load balancer does: the answer is what is being tested.
            while (await self.healthz())[0] != status:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        return loop.time() - began

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def stop(self) -> int:
        """SIGTERM; the exit code."""
        self.signal(signal.SIGTERM)
        assert self.proc is not None
        async with asyncio.timeout(30):
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


@pytest.fixture
async def served_daemon(sim_env: SimEnv, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``await served_daemon(**settings)``: a ready daemon on ``sim_env``, killed at the end."""
    started: list[ServedDaemon] = []

    async def start(
        secrets: dict[str, str] | None = None,
        database_url: str | None = None,
        wait_ready: bool = True,
        journal_socket: Path | None = None,
        **settings: str,
    ) -> ServedDaemon:
        env_file = tmp_path / f"breezeway-{len(started)}.env"
        values = {"state_dir": str(tmp_path), **DEFAULTS, **settings}
        text = env_file_text(sim_env, database_url=database_url, secrets=secrets, **values)
        env_file.write_text(text)
        env_file.chmod(0o600)
        daemon = ServedDaemon(env_file)
        started.append(daemon)
        await daemon.start(journal_socket)
        if wait_ready:
            await daemon.ready()
        return daemon

    yield start
    for daemon in started:
        await daemon.kill()
