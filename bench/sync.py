"""Benchmark: a full sync of 8 regions against the simulator over HTTP, then an incremental one.

    .venv/bin/python bench/sync.py [--companies 8] [--latency 0.08] [--rate 165] [--seed 7]

The simulator runs in its own process (uvicorn on 127.0.0.1, 80 ms added to every request,
its data rate limit per credential set to ``--rate`` requests per rolling minute), so that it
does not share the sync's event loop. The data is scaled down with the rate limit (the real
API allows 200 requests a minute against a few hundred properties per company; here each of
the companies has 80 properties with 150 tasks each, two task pages per property) so that
the full run takes about a minute. The sync runs in this process as the daemon would: every
region at once (``region_concurrency`` = companies), the client paced at the simulator's
limit, into a throwaway database on ``DATABASE_URL`` or 127.0.0.1:5432 (created and dropped).

It prints wall time, API calls, rows/s, peak RSS of this process and the lower bound that the
rate limit sets: ``bound_s`` = max over regions of calls / (rate per second), the credentials
being independent and the regions running in parallel. The limit is a rolling window, which
lets the first ``rate`` calls of a credential go at once, so the true lower bound is the
stepped ``window_bound_s`` = 60 s x floor((calls - 1) / rate); the default rate puts the calls
just above one window, where the two agree within a few percent. Then it advances the
simulated clock one hour and runs incrementally. It asserts nothing. Last line: one JSON
object with wall_s, bound_s, wall_over_bound, api_calls, client_429s, rows, peak_rss_mb,
incremental_api_calls, incremental_wall_s (and window_bound_s).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from simprocess import SimProcess
from throwaway import create_database, drop_database

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from breezeway_daemon.config import load_settings  # noqa: E402
from breezeway_daemon.entities import ENTITY_NAMES  # noqa: E402
from breezeway_daemon.logs import configure_logging  # noqa: E402
from breezeway_daemon.sync import RunResult, SyncContext, run_batch  # noqa: E402
from breezeway_sim import Scale  # noqa: E402

SCALE = Scale(
    properties=80,
    reservations_per_property=8,
    tasks_per_property=150,
    people=30,
    supplies=30,
    tags=10,
)
# The client paces a little below the API's limit (production: 180 against 200), leaving room
# for the delay between a request's start on our side and its arrival being counted there.
CLIENT_SHARE = 0.95


# --- the runs ---------------------------------------------------------------------------
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def calls_by_region(results: list[RunResult]) -> dict[str, int]:
    calls: dict[str, int] = {}
    for result in results:
        calls[result.region] = calls.get(result.region, 0) + result.counts.api_calls_made
    return calls


def report_failures(label: str, results: list[RunResult]) -> None:
    for result in results:
        if result.status != "success":
            print(f"  {label}: {result.region}/{result.entity} {result.status}: {result.error}")


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    database = await create_database("sync")
    sim = SimProcess(
        args.companies, SCALE, args.seed, latency_s=args.latency, data_rate_limit=args.rate
    )
    try:
        settings = load_settings(
            Path("/nonexistent/bw-bench.env"),
            database_url=database,
            api_base_url=sim.base_url,
            regions={f"region_{c.index}": c.credentials() for c in sim.companies},
            state_dir=Path(tempfile.mkdtemp(prefix="bw-bench-sync-")),
            requests_per_minute=args.client_rate or args.rate * CLIENT_SHARE,
            max_in_flight_per_credential=8,
            task_fetch_concurrency=8,
            region_concurrency=args.companies,
            db_pool_size=max(10, 3 * args.companies),
            http_timeout_s=30,
        )
        regions = list(settings.regions)
        async with SyncContext.open(settings, application_name="bench-sync") as ctx:
            started = time.perf_counter()
            full = await run_batch(ctx, regions, ENTITY_NAMES, trigger="bench")
            wall = time.perf_counter() - started
        after_full = await asyncio.to_thread(sim.stats)
        report_failures("full", full)

        advanced = await asyncio.to_thread(sim.advance, 1.0)
        # A new context (as the next hourly job finds it): its pacers start with an empty window.
        async with SyncContext.open(settings, application_name="bench-sync") as ctx:
            started = time.perf_counter()
            incremental = await run_batch(ctx, regions, ENTITY_NAMES, trigger="bench")
            incremental_wall = time.perf_counter() - started
            after_incremental = await asyncio.to_thread(sim.stats)
            report_failures("incremental", incremental)
    finally:
        sim.stop()
        await drop_database(database)

    calls = calls_by_region(full)
    rate_per_s = args.rate / 60
    bound = max(calls.values()) / rate_per_s
    window_bound = max(60.0 * math.floor((c - 1) / args.rate) for c in calls.values())
    rows = sum(r.counts.records_processed for r in full)
    api_calls = sum(calls.values())
    full_429s = sum(s["rate_limited"] for s in after_full.values())
    client_429s = sum(s["rate_limited"] for s in after_incremental.values())
    changes = sum(sum(kind.values()) for per in advanced.values() for kind in per.values())
    incremental_calls = sum(r.counts.api_calls_made for r in incremental)
    incremental_rows = sum(r.counts.records_processed for r in incremental)
    slowest = max(incremental, key=lambda r: r.duration_s)
    print(f"regions: {len(regions)}, latency {args.latency * 1000:.0f} ms, "
          f"rate limit {args.rate}/min per credential, client pacing "
          f"{settings.requests_per_minute:g}/min, scale {SCALE}")  # fmt: skip
    print(f"full run:        {wall:7.1f} s  {api_calls} API calls "
          f"(per region {min(calls.values())}..{max(calls.values())}), {rows} rows, "
          f"{rows / wall:,.0f} rows/s, failed runs {sum(r.status != 'success' for r in full)}")  # fmt: skip
    print(f"rate-limit bound: {bound:6.1f} s  (max calls per region / {rate_per_s:.2f} per s); "
          f"rolling-window bound {window_bound:.1f} s; wall/bound {wall / bound:.3f}")  # fmt: skip
    print(f"simulator saw:   {sum(s['data_requests'] for s in after_full.values())} data requests, "
          f"max {max(s['max_requests_in_window'] for s in after_full.values())} of one credential in 60 s, "
          f"{full_429s} answered 429 (with the incremental run: {client_429s})")  # fmt: skip
    print(
        f"incremental:     {incremental_wall:7.1f} s  {incremental_calls} API calls, "
        f"{incremental_rows} rows after {changes} simulated changes, failed runs "
        f"{sum(r.status != 'success' for r in incremental)}; slowest run "
        f"{slowest.region}/{slowest.entity} {slowest.duration_s:.1f} s"
    )
    print(f"peak RSS:        {peak_rss_mb():7.1f} MB")
    return {
        "wall_s": round(wall, 2),
        "bound_s": round(bound, 2),
        "wall_over_bound": round(wall / bound, 3),
        "api_calls": api_calls,
        "client_429s": client_429s,
        "rows": rows,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "incremental_api_calls": incremental_calls,
        "incremental_wall_s": round(incremental_wall, 2),
        "window_bound_s": round(window_bound, 2),
        "failed_runs": sum(r.status != "success" for r in full + incremental),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--companies", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.08, help="seconds per request")
    parser.add_argument("--rate", type=int, default=165, help="data requests per minute")
    parser.add_argument(
        "--client-rate", type=float, default=None,
        help=f"client pacing per minute (default {CLIENT_SHARE:g} x --rate)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    configure_logging("warning")
    figures = asyncio.run(bench(args))
    print(orjson.dumps(figures).decode())


if __name__ == "__main__":
    main()
