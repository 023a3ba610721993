"""Benchmark: a full sync of every region against the simulator over HTTP, one hourly batch
and one daily batch.

    .venv/bin/python bench/sync.py [--companies 8] [--scale bench|fifty|prod] [--speed 15]
        [--latency 0.08] [--rate 165] [--concurrency N] [--pool-size 16] [--quiet-every 6]

The simulator runs in its own process (uvicorn on 127.0.0.1, ``--latency`` added to every
request, its data rate limit per credential ``--rate`` requests per rolling minute), so that
it does not share the sync's event loop. The sync runs in this process as the daemon would,
into a throwaway database on ``DATABASE_URL`` or 127.0.0.1:5432 (created and dropped), with
the daemon's defaults except: ``region_concurrency`` (``--concurrency``, default every region
at once), ``db_pool_size`` and ``task_quiet_poll_every`` as given, pacing ``--client-rate``.

Phases, each in a new ``SyncContext`` (as the next scheduled job finds it): ``full`` (every
entity, ``--full``), the clock one simulated hour on (``advance``: for the daemon's record
of the API's minute too), ``hourly`` (the hourly entities, incremental: the task polling
plan applies), one more hour, ``daily`` (every entity in full, as the daily batch with
``BREEZEWAY_DAILY_FULL_REFRESH``). Per phase: wall time, API calls,
the rate limit's lower bound (``Phase.bound_s``: the busiest credential's calls at the
client's pacing rate, or all calls shared by the credentials running at once when regions
take turns), wall/bound, 429s the simulator answered, peak RSS of this process (VmHWM, reset
before each phase), the most pool connections in use (sampled every 10 ms) and how many
samples found all in use, and the database's size after it.

Scales: ``bench`` (default; 80 properties and 12,000 tasks per company, the rate scaled down
to 165 so a full run takes about a minute), ``fifty`` (40 properties, 800 tasks per company,
for ``--companies 50``), ``prod`` (the simulator's production mix: one company of 5,000
properties and 60,000 tasks, seven of 60-500 properties). ``prod`` runs the real limit (200 a
minute, the client pacing at 180) and the 80 ms latency ``--speed`` times faster, and prints
the hourly batch's time at the real rate as the busiest region's calls / 180 a minute: an
extrapolation, since the wall time scales with the rate once the run is rate-bound, which
wall/bound shows. It asserts nothing. Last line: one JSON object of the figures per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

import report
from simprocess import SimProcess, age_reservations
from throwaway import create_database, drop_database

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from breezeway_daemon.config import Settings  # noqa: E402
from breezeway_daemon.db.runs import RequestMode  # noqa: E402
from breezeway_daemon.sync import RunResult, SyncContext, run_batch  # noqa: E402

# The client paces a little below the API's limit, leaving room for the delay between a
# request's start on our side and its arrival being counted there: 0.95 in the small
# benches; production's 180 against 200 (0.9) at --scale prod.
CLIENT_SHARE = 0.95
PROD_SHARE = 0.9
PROD_RATE = 200
PROD_LATENCY_S = 0.08


# --- measuring -----------------------------------------------------------------------------
def reset_peak_rss() -> None:
    """Start a new peak (Linux: VmHWM is reset by writing 5 to clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PoolWatch:
    """Samples the pool every 10 ms: the most connections in use, and how often all were."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.peak = 0
        self.exhausted = 0
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        while True:
            in_use = self.pool.get_size() - self.pool.get_idle_size()
            self.peak = max(self.peak, in_use)
            self.samples += 1
            self.exhausted += in_use >= self.pool.get_max_size()
            await asyncio.sleep(0.01)

    def __enter__(self) -> PoolWatch:
        self._task = asyncio.get_running_loop().create_task(self._watch())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


@dataclass
class Phase:
    name: str
    wall_s: float
    results: list[RunResult]
    rate_limited: int
    peak_rss_mb: float
    pool_peak: int
    pool_exhausted: int
    db_mb: float

    @property
    def calls(self) -> dict[str, int]:
        calls: dict[str, int] = {}
        for result in self.results:
            calls[result.region] = calls.get(result.region, 0) + result.counts.api_calls_made
        return calls

    def bound_s(self, per_minute: float, concurrency: int) -> float:
        """The rate limit's lower bound on the wall time: the busiest credential's calls at
        ``per_minute`` (a rolling window: its first minute's calls may go at once), or, when
        the regions take turns, all calls shared by ``concurrency`` credentials at a time."""
        calls = self.calls.values()
        busiest = max(max(c / per_minute, math.floor((c - 1) / per_minute)) for c in calls)
        shared = sum(calls) / per_minute / min(concurrency, len(self.calls))
        return 60 * max(busiest, shared)


def report_failures(phase: Phase) -> None:
    for result in phase.results:
        if result.status != "success":
            print(
                f"  {phase.name}: {result.region}/{result.entity} {result.status}: {result.error}"
            )


async def run_phase(
    name: str, settings: Settings, sim: SimProcess, entities: list[str], mode: RequestMode
) -> Phase:
    """One batch in a new context (as the next scheduled job finds it)."""
    await asyncio.to_thread(sim.reset)
    reset_peak_rss()
    async with SyncContext.open(settings, application_name="bench-sync") as ctx:
        with PoolWatch(ctx.pool) as watch:
            started = time.perf_counter()
            results = await run_batch(
                ctx, list(settings.regions), entities, mode=mode, trigger="bench"
            )
            wall = time.perf_counter() - started
        db_bytes = await ctx.pool.fetchval("SELECT pg_database_size(current_database())")
    stats = await asyncio.to_thread(sim.stats)
    phase = Phase(name, wall, results, sum(s["rate_limited"] for s in stats.values()),
                  peak_rss_mb(), watch.peak, watch.exhausted, db_bytes / 2**20)  # fmt: skip
    report_failures(phase)
    return phase


async def advance(sim: SimProcess, database: str, hours: float) -> None:
    """The clock ``hours`` on, for the simulator and for the daemon's record of the API's
    minute alike (the daily batch starts 30 minutes after the hourly one in production)."""
    await asyncio.to_thread(sim.advance, hours)
    await age_reservations(database, hours * 3600)


# --- the runs ---------------------------------------------------------------------------
async def bench(args: argparse.Namespace) -> dict[str, Any]:
    prod = args.scale == "prod"
    speed = args.speed if prod else 1.0
    rate = round(PROD_RATE * speed) if prod else args.rate
    share = PROD_SHARE if prod else CLIENT_SHARE
    client_rate = args.client_rate or rate * share
    latency = PROD_LATENCY_S / speed if prod else args.latency
    scale = args.scale
    concurrency = args.concurrency or args.companies
    database = await create_database("sync")
    sim = SimProcess(args.companies, scale, args.seed, latency_s=latency, data_rate_limit=rate)
    try:
        settings = sim.settings(
            database,
            "sync",
            requests_per_minute=client_rate,
            region_concurrency=concurrency,
            db_pool_size=args.pool_size,
            task_quiet_poll_every=args.quiet_every,
            http_timeout_s=30,
        )
        # The listings only: task details have their own budget and benchmark (bench/details.py).
        hourly = [name for name in settings.hourly_entities if name != "task_details"]
        daily = list(settings.daily_entities) + hourly
        print(f"regions: {args.companies} ({args.scale} scale, simulator ready in "
              f"{sim.prepare_s:.1f} s), latency {latency * 1000:.1f} ms, rate limit {rate}/min "
              f"per credential, client pacing {client_rate:g}/min"
              + (f" (the real 200 and 180 x {speed:g})" if prod else "")
              + f", region concurrency {concurrency}, pool {settings.db_pool_size}, "
              f"quiet task properties every {settings.task_quiet_poll_every} runs")  # fmt: skip
        phases = [await run_phase("full", settings, sim, daily, RequestMode.FULL)]
        await advance(sim, database, 1.0)
        phases.append(await run_phase("hourly", settings, sim, hourly, RequestMode.INCREMENTAL))
        await advance(sim, database, 1.0)
        phases.append(await run_phase("daily", settings, sim, daily, RequestMode.FULL))
    finally:
        sim.stop()
        await drop_database(database)

    print(f"{'phase':8} {'wall s':>8} {'calls':>7} {'bound s':>8} {'wall/bound':>10} "
          f"{'429s':>5} {'RSS MB':>7} {'pool peak':>9} {'exhausted':>9} {'DB MB':>7} failed")  # fmt: skip
    figures: dict[str, Any] = {}
    for phase in phases:
        bound = phase.bound_s(client_rate, concurrency)
        failed = sum(r.status != "success" for r in phase.results)
        print(f"{phase.name:8} {phase.wall_s:8.1f} {sum(phase.calls.values()):7} {bound:8.1f} "
              f"{phase.wall_s / bound:10.3f} {phase.rate_limited:5} {phase.peak_rss_mb:7.1f} "
              f"{phase.pool_peak:5}/{settings.db_pool_size:<3} {phase.pool_exhausted:9} "
              f"{phase.db_mb:7.0f} {failed}")  # fmt: skip
        figures[phase.name] = {
            "wall_s": round(phase.wall_s, 1), "api_calls": sum(phase.calls.values()),
            "bound_s": round(bound, 1), "wall_over_bound": round(phase.wall_s / bound, 3),
            "rate_limited": phase.rate_limited, "peak_rss_mb": round(phase.peak_rss_mb, 1),
            "pool_peak": phase.pool_peak, "pool_exhausted_samples": phase.pool_exhausted,
            "db_mb": round(phase.db_mb), "failed_runs": failed,
        }  # fmt: skip
    hourly_phase = phases[1]
    tasks = [r for r in hourly_phase.results if r.entity == "tasks"]
    skipped = sum(r.parents_skipped for r in tasks)
    task_calls = sum(r.counts.api_calls_made for r in tasks)
    busiest = max(hourly_phase.calls.values())
    real_min = busiest / (client_rate / speed)
    print(f"hourly task calls: {task_calls} (quiet properties skipped: {skipped}; listing "
          f"every property: {task_calls + skipped})")  # fmt: skip
    print(
        f"hourly batch at the real rate: busiest region {busiest} calls / "
        f"{client_rate / speed:g} per min = {real_min:.1f} min (extrapolated: calls / rate)"
    )
    figures["hourly"] |= {"task_calls": task_calls, "task_parents_skipped": skipped,
                          "real_rate_minutes": round(real_min, 1)}  # fmt: skip
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--companies", type=int, default=8)
    parser.add_argument("--scale", choices=("bench", "fifty", "prod"), default="bench")
    parser.add_argument("--speed", type=float, default=15,
                        help="prod: the real rate limit (and 80 ms latency) sped up this much")  # fmt: skip
    parser.add_argument("--latency", type=float, default=0.08, help="seconds per request")
    parser.add_argument("--rate", type=int, default=165, help="data requests per minute")
    parser.add_argument(
        "--client-rate", type=float, default=None,
        help=f"client pacing per minute (default {CLIENT_SHARE:g} x --rate; prod {PROD_SHARE:g})",
    )  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=None,
                        help="BREEZEWAY_REGION_CONCURRENCY (default: every region at once)")  # fmt: skip
    parser.add_argument("--pool-size", type=int, default=16, help="BREEZEWAY_DB_POOL_SIZE")
    parser.add_argument("--quiet-every", type=int, default=6,
                        help="BREEZEWAY_TASK_QUIET_POLL_EVERY (1: every property every hour)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=7)
    report.run(bench, parser)


if __name__ == "__main__":
    main()
