"""Benchmark: what being scraped every 5 seconds costs an idle daemon, against one not scraped.

    .venv/bin/python bench/scrape.py [--seconds 180] [--companies 8] [--interval 5]

Two ``breezeway-daemon serve`` processes, each with its own throwaway database and the
HTTP listener on, sync the same simulated companies (the simulator in its own process)
twice, an hour of simulated changes apart, so that every metric series a production
daemon has exists (8 regions x 6 entities by default). Then, for ``--seconds``, one daemon is scraped every ``--interval``
seconds (GET /metrics with the Accept header Prometheus sends) and the other is not;
no batch is due in either. It prints the CPU (user + system, from /proc) each used over
those seconds, the scraped one's share of a core, the CPU per scrape, the ratio of the
two, the scrape latency and the body's size. It asserts nothing. Last line: one JSON
object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from simprocess import SimProcess
from throwaway import create_database, drop_database

BIN = Path(sys.executable).with_name("breezeway-daemon")
TICK_S = 1 / os.sysconf("SC_CLK_TCK")
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


class Daemon:
    """One ``serve`` process; its log events are read (and so never block its stdout)."""

    def __init__(self, name: str, database: str, sim: SimProcess, state: Path) -> None:
        self.name = name
        lines = [
            f"DATABASE_URL={database}",
            f"BREEZEWAY_API_BASE_URL={sim.base_url}",
            f"BREEZEWAY_STATE_DIR={state}",
            "BREEZEWAY_HTTP_LISTEN=127.0.0.1:0",
            "BREEZEWAY_HOURLY_ENTITIES=properties,reservations,tasks,people,supplies,tags",
            "BREEZEWAY_HOURLY_CRON=0 0 1 1 *",  # no batch due while measuring
            "BREEZEWAY_DAILY_CRON=0 0 1 1 *",
        ]
        for company in sim.companies:
            prefix = f"BREEZEWAY_REGIONS__REGION_{company.index}__"
            lines += [
                f"{prefix}{key.upper()}={value}" for key, value in company.credentials().items()
            ]
        self.env_file = state / "bench.env"
        self.env_file.write_text("\n".join(lines) + "\n")
        self.env_file.chmod(0o600)
        self.proc: asyncio.subprocess.Process | None = None
        self.events: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self.url = ""

    async def start(self) -> None:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("BREEZEWAY_", "DATABASE_URL"))
        }
        env.pop("JOURNAL_STREAM", None)
        env.pop("NOTIFY_SOCKET", None)
        env["BREEZEWAY_ENV_FILE"] = str(self.env_file)
        self.proc = await asyncio.create_subprocess_exec(
            str(BIN), "serve", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())
        listening = await self.wait("http_listening")
        self.url = f"http://{listening['address']}"
        await self.wait("daemon_ready")

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            with contextlib.suppress(orjson.JSONDecodeError):
                self.events.append(orjson.loads(line))
                self._arrived.set()

    async def wait(self, name: str, seen: int = 0) -> dict[str, Any]:
        """The event called ``name`` after ``seen`` earlier ones."""
        async with asyncio.timeout(300):
            while True:
                found = [event for event in self.events if event.get("event") == name]
                if len(found) > seen:
                    return found[seen]
                self._arrived.clear()
                await self._arrived.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 60)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()


async def scrape_every(url: str, interval: float, seconds: float) -> list[tuple[float, int]]:
    """GET /metrics every ``interval`` s for ``seconds`` s: (latency s, body bytes) each."""
    loop = asyncio.get_running_loop()
    results = []
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        began = loop.time()
        next_at = began
        while next_at < began + seconds:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            started = time.perf_counter()
            response = await client.get("/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
            results.append((time.perf_counter() - started, len(response.content)))
            response.raise_for_status()
            next_at += interval
        await asyncio.sleep(max(0.0, began + seconds - loop.time()))
    return results


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    databases = [await create_database("scrape_a"), await create_database("scrape_b")]
    sim = SimProcess(args.companies, "small", args.seed, data_rate_limit=None)
    daemons = [
        Daemon(name, database, sim, Path(tempfile.mkdtemp(prefix=f"bw-bench-scrape-{name}-")))
        for name, database in zip(("scraped", "not-scraped"), databases, strict=True)
    ]
    try:
        for daemon in daemons:
            await daemon.start()
        # Two batches each, the second an hour of simulated changes later: every series a
        # production daemon has (records new, updated, unchanged, deleted).
        for batch in range(2):
            if batch:
                await asyncio.to_thread(sim.advance, 1.0)
            for daemon in daemons:
                assert daemon.proc is not None
                daemon.proc.send_signal(signal.SIGUSR1)
            for daemon in daemons:
                finished = await daemon.wait("batch_finished", batch)
                assert finished["failed"] == 0, finished
        await asyncio.sleep(5)  # the batch's alerts and log lines settle
        scraped, idle = daemons
        assert scraped.proc is not None and idle.proc is not None
        before = cpu_s(scraped.proc.pid), cpu_s(idle.proc.pid)
        scrapes = await scrape_every(scraped.url, args.interval, args.seconds)
        after = cpu_s(scraped.proc.pid), cpu_s(idle.proc.pid)
        body = (await httpx.AsyncClient(base_url=scraped.url).get("/metrics")).text
    finally:
        for daemon in daemons:
            await daemon.stop()
        sim.stop()
        for database in databases:
            await drop_database(database)

    used_scraped, used_idle = after[0] - before[0], after[1] - before[1]
    latencies = sorted(latency for latency, _ in scrapes)
    series = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
    figures = {
        "seconds": args.seconds,
        "scrapes": len(scrapes),
        "cpu_scraped_s": round(used_scraped, 3),
        "cpu_not_scraped_s": round(used_idle, 3),
        "scraped_share_of_core_pct": round(100 * used_scraped / args.seconds, 3),
        "not_scraped_share_of_core_pct": round(100 * used_idle / args.seconds, 3),
        "cpu_per_scrape_ms": round(1000 * (used_scraped - used_idle) / len(scrapes), 2),
        # CPU is counted in clock ticks: an idle daemon may use less than one in the run.
        "ratio_scraped_over_not": round(used_scraped / max(used_idle, TICK_S), 1),
        "scrape_ms_p50": round(1000 * statistics.median(latencies), 2),
        "scrape_ms_max": round(1000 * latencies[-1], 2),
        "body_bytes": scrapes[-1][1],
        "series": series,
    }
    print(f"{args.companies} regions x 6 entities synced twice; {series} series, "
          f"{figures['body_bytes']:,} bytes per scrape (OpenMetrics)")  # fmt: skip
    print(f"over {args.seconds:g} s: scraped every {args.interval:g} s ({len(scrapes)} scrapes) "
          f"{used_scraped:.2f} s CPU = {figures['scraped_share_of_core_pct']:.2f}% of a core; "
          f"not scraped {used_idle:.2f} s = {figures['not_scraped_share_of_core_pct']:.2f}%")  # fmt: skip
    print(f"per scrape: {figures['cpu_per_scrape_ms']:.2f} ms CPU, answered in "
          f"{figures['scrape_ms_p50']:.1f} ms (median), {figures['scrape_ms_max']:.1f} ms (max); "
          f"scraped / not scraped CPU: {figures['ratio_scraped_over_not']:.1f}x")  # fmt: skip
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--interval", type=float, default=5)
    parser.add_argument("--companies", type=int, default=8)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    figures = asyncio.run(bench(args))
    print(orjson.dumps(figures).decode())


if __name__ == "__main__":
    main()
