"""The daemon as a process with its HTTP listener on, and reading what it serves
(the ``served_daemon`` fixture of ``tests/conftest.py`` starts them).

- ``ServedDaemon``: ``support.daemon.DaemonProcess`` with the listener's URL (from its
  ``http_listening`` event), ``scrape()`` of ``/metrics`` parsed with prometheus_client's
  own text parser and ``healthz()``; optionally started as systemd starts it with the
  journal (stdout a pipe that ``JOURNAL_STREAM`` names, a stand-in journal socket);
- ``Scrape``: the parsed families, with ``value(name, **labels)`` and ``names()``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from breezeway_daemon import journal

from support.cli import BIN, process_env
from support.daemon import WAIT_S, DaemonProcess

PRIORITY_PREFIX = re.compile(r"<(\d)>")


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


class ServedDaemon(DaemonProcess):
    """``breezeway-daemon serve`` with its HTTP listener on."""

    url = ""

    async def start(self, journal_socket: Path | None = None) -> None:
        """Start ``serve``, stdout and stderr on a pipe. With ``journal_socket``, as systemd
        does with the journal: ``JOURNAL_STREAM`` names the pipe, the journal's socket is
        ``journal_socket``."""
        env = process_env(
            BREEZEWAY_ENV_FILE=str(self.env_file), NOTIFY_SOCKET=str(self.notify.path),
            **self.extra_env,
        )  # fmt: skip
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
        self._reader = asyncio.get_running_loop().create_task(self._read_lines(stdout))

    async def _read_lines(self, stdout: asyncio.StreamReader) -> None:
        """Each line's event; a ``<N>`` priority prefix (under systemd) kept as ``_priority``."""
        async for raw in stdout:
            line = raw.decode(errors="replace").strip()
            self.raw_lines.append(line)
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

    async def stop(self) -> int:
        """SIGTERM; the exit code."""
        self.signal(signal.SIGTERM)
        return await self.wait_exit(30)

    async def ready(self) -> None:
        """Until the daemon is ready; then ``url`` is its listener's."""
        listening = self.events[await self.wait_event("http_listening")]
        self.url = f"http://{listening['address']}"
        await self.wait_event("daemon_ready")

    async def get(self, path: str, **headers: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            return await client.get(path, headers=headers)

    async def scrape(self) -> Scrape:
        response = await self.get("/metrics")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        return Scrape.parse(response.text)

    async def until_scraped(self, done: Callable[[Scrape], bool]) -> Scrape:
        """Scrape (every 0.1 s) until ``done(scrape)``: for what the daemon does after its
        last log event (a batch's alerts follow ``batch_finished``), or in the background."""
        async with asyncio.timeout(WAIT_S):
            while not done(scrape := await self.scrape()):  # noqa: ASYNC110
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
