"""Benchmark: the task details' fetch policy, its API calls a day and its daily sweep's pace.

    .venv/bin/python bench/details.py [--tasks 140000] [--regions 8] [--open 4000]
        [--changed 3000] [--rate 240] [--sweep-tasks 2000]

1. Calls a day. A throwaway database holds ``--tasks`` tasks over ``--regions`` regions as
   the replaced system had them (``--open`` not finished or finished within the last week,
   the rest finished long ago), every task's details fetched within the last day. A
   simulated day then changes ``--changed`` tasks (new ones included, mostly open ones) in
   24 hourly steps; each hour asks the policy's own query (``sync.details.DUE_TASKS``, the
   settings' defaults) which tasks are due, as the hourly run does, and the daily batch at
   02:30 sweeps every open task (``full``). Calls = 2 per task picked (comments and
   requirements), next to the naive 2 x every task, every day.
2. The sweep's pace, over HTTP: a simulator in its own process (``--regions`` companies,
   ``--sweep-tasks`` tasks each, about one in seven open; 40 ms per request) limited to
   ``--rate`` requests a minute per credential (the real API: 200). The data is scaled down
   (a few hundred open tasks a region) so that the sweep spans a few windows, about three
   minutes. After a first sync of the tasks and their details (unpaced, not measured), and
   a day later for both sides' record of the API's minute (``age_reservations``), a
   ``full`` task_details run (the daily sweep) is timed against its rate-limit bound: the
   rolling window lets a window's worth go at once, so the bound is 60.25 s x
   floor((calls - 1) / budget) for the region with the most calls, budget being the
   details' share of the client's pacing (x 0.8: background requests leave a fifth of the
   window to listings, ``api.pacing``). Also the steady-rate bound, the bound at the full
   pacing, and the 429s the simulator answered.

Last line: one JSON object with the figures. It asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

import report
from simprocess import SimProcess, age_reservations
from throwaway import create_database, drop_database

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from breezeway_daemon.api.pacing import BACKGROUND_RESERVE, WINDOW_S  # noqa: E402
from breezeway_daemon.sync import SyncContext, run_batch  # noqa: E402
from breezeway_daemon.sync.details import DUE_TASKS, DetailsPolicy  # noqa: E402
from breezeway_sim import Scale  # noqa: E402

DAILY_HOUR = 2  # the daily batch (02:30) sweeps every open task
CLIENT_SHARE = 0.95  # as bench/sync.py: the client paces a little below the API's limit

SEED = (
    "INSERT INTO breezeway.properties (region_code, id, raw, content_hash) "
    "VALUES ($1, 1, '{}', '\\x00')",
    # One task in $3 is open; the others finished 8 to 700 days ago.
    "INSERT INTO breezeway.tasks (region_code, id, property_id, finished_at, raw, content_hash) "
    "SELECT $1, n, 1, CASE WHEN n % $3 = 0 THEN NULL "
    "ELSE now() - interval '8 days' - n % 700 * interval '1 day' END, "
    "'{}', decode(md5(n::text), 'hex') FROM generate_series($4::bigint + 1, $4::bigint + $2) n",
    # Every task's details fetched within the last day, spread evenly.
    "INSERT INTO breezeway.task_details_fetches (region_code, task_id, task_hash, fetched_at) "
    "SELECT $1, id, content_hash, now() - (id % 1440) * interval '1 minute' "
    "FROM breezeway.tasks WHERE region_code = $1",
)


# --- 1. calls a day ----------------------------------------------------------------------
async def calls_a_day(args: argparse.Namespace) -> dict[str, Any]:
    database = await create_database("details")
    policy = DetailsPolicy()
    try:
        conn = await asyncpg.connect(database)
        try:
            per_region = args.tasks // args.regions
            every = max(1, args.tasks // args.open)  # one task in ``every`` is open
            regions = [f"region_{n}" for n in range(1, args.regions + 1)]
            for index, region in enumerate(regions):
                await conn.execute(SEED[0], region)
                await conn.execute(SEED[1], region, per_region, every, index * 10**7)
                await conn.execute(SEED[2], region)
            await conn.execute("ANALYZE")
            total = await conn.fetchval("SELECT count(*) FROM breezeway.tasks")
            open_now = await conn.fetchval(
                "SELECT count(*) FROM breezeway.tasks WHERE finished_at IS NULL"
            )
            start = datetime.now(UTC)
            picked = swept = 0
            for hour in range(24):
                now = start + timedelta(hours=hour)
                # The hour's changes: open tasks mostly, one in ten a new task.
                changes = args.changed // 24
                await conn.execute(
                    "UPDATE breezeway.tasks SET content_hash = decode(md5(random()::text), 'hex') "
                    "WHERE (region_code, id) IN (SELECT region_code, id FROM breezeway.tasks "
                    "ORDER BY (finished_at IS NULL) DESC, random() LIMIT $1)",
                    changes - changes // 10,
                )
                await conn.execute(
                    "INSERT INTO breezeway.tasks (region_code, id, property_id, raw, content_hash) "
                    "SELECT $1, 9 * 10^9 + $2 * 1000 + n, 1, '{}', '\\x01' "
                    "FROM generate_series(1, $3) AS n",
                    regions[hour % len(regions)],
                    hour,
                    changes // 10,
                )
                full = hour == DAILY_HOUR
                for region in regions:
                    due = await conn.fetch(
                        DUE_TASKS,
                        region,
                        now - timedelta(days=policy.open_days),
                        now if full else now - timedelta(hours=policy.sweep_hours),
                        10**9,
                    )
                    picked += len(due)
                    swept += len(due) if full else 0
                    await conn.execute(
                        "UPDATE breezeway.task_details_fetches f SET fetched_at = $3, "
                        "task_hash = t.content_hash FROM breezeway.tasks t "
                        "WHERE t.region_code = f.region_code AND t.id = f.task_id "
                        "AND f.region_code = $1 AND f.task_id = ANY($2::bigint[])",
                        region,
                        [row["id"] for row in due],
                        now,
                    )
                    await conn.execute(
                        "INSERT INTO breezeway.task_details_fetches "
                        "(region_code, task_id, task_hash, fetched_at) "
                        "SELECT region_code, id, content_hash, $2 FROM breezeway.tasks t "
                        "WHERE region_code = $1 AND NOT EXISTS (SELECT 1 FROM "
                        "breezeway.task_details_fetches f WHERE f.region_code = t.region_code "
                        "AND f.task_id = t.id)",
                        region,
                        now,
                    )
        finally:
            await conn.close()
    finally:
        await drop_database(database)
    policy_calls = 2 * picked
    naive_calls = 2 * total
    print(f"1. {total} tasks over {args.regions} regions, {open_now} open, {args.changed} "
          f"changed in the day (one in ten new)")  # fmt: skip
    print(f"   policy: {picked} tasks' details fetched in the day ({swept} by the daily sweep)"
          f" = {policy_calls} API calls; naive (every task, every day): {naive_calls}; "
          f"ratio {policy_calls / naive_calls:.3f}")  # fmt: skip
    return {"tasks": total, "open": open_now, "policy_calls_per_day": policy_calls,
            "naive_calls_per_day": naive_calls,
            "policy_over_naive": round(policy_calls / naive_calls, 4)}  # fmt: skip


# --- 2. the sweep's pace -----------------------------------------------------------------
async def sweep(args: argparse.Namespace) -> dict[str, Any]:
    database = await create_database("details_sweep")
    # Every task of these companies is open or recent: scheduled around now.
    scale = Scale(properties=10, reservations_per_property=1,
                  tasks_per_property=max(1, args.sweep_tasks // 10), people=5, supplies=5, tags=3)  # fmt: skip
    sim = SimProcess(args.regions, scale, 11, latency_s=0.04, data_rate_limit=args.rate)
    try:
        client_rate = args.rate * CLIENT_SHARE
        settings = sim.settings(
            database,
            "details",
            requests_per_minute=client_rate,
            max_in_flight_per_credential=8,
            task_fetch_concurrency=8,
            region_concurrency=args.regions,
            db_pool_size=max(10, 3 * args.regions),
            details_max_tasks_per_run=100_000,
            http_timeout_s=30,
        )
        regions = list(settings.regions)
        # The first sync (every task's details once) unpaced on both sides: not measured.
        unpaced = settings.model_copy(update={"requests_per_minute": 100_000})
        await asyncio.to_thread(sim.set_faults, data_rate_limit_per_minute=None)
        async with SyncContext.open(unpaced, application_name="bench-details") as ctx:
            first = await run_batch(ctx, regions, ["properties", "tasks", "task_details"])
        failed = [r for r in first if r.failed]
        await asyncio.to_thread(sim.set_faults, data_rate_limit_per_minute=args.rate)
        # The sweep comes a day later: new windows on both sides; count the sweep's 429s only.
        await asyncio.to_thread(sim.reset)
        await age_reservations(database, 24 * 3600)
        async with SyncContext.open(settings, application_name="bench-details") as ctx:
            started = time.perf_counter()
            swept = await run_batch(ctx, regions, ["task_details"], mode="full")
            wall = time.perf_counter() - started
        stats = await asyncio.to_thread(sim.stats)
    finally:
        sim.stop()
        await drop_database(database)
    failed += [r for r in swept if r.failed]
    calls = {r.region: r.counts.api_calls_made for r in swept}
    # The details' budget per window; the rolling window lets a window's worth go at once,
    # so the true lower bound is stepped (as bench/sync.py's window_bound_s).
    budget = int(client_rate * (1 - BACKGROUND_RESERVE))
    most = max(calls.values())
    bound = WINDOW_S * math.floor((most - 1) / budget)
    smooth_bound = most / (budget / 60)
    full_bound = WINDOW_S * math.floor((most - 1) / int(client_rate))
    too_many = sum(s["rate_limited"] for s in stats.values())
    tasks = sum(r.counts.records_processed for r in swept)
    print(f"2. daily sweep over HTTP: {len(regions)} regions, {tasks} open tasks, "
          f"{sum(calls.values())} API calls (per region {min(calls.values())}..{max(calls.values())}), "
          f"rate {args.rate}/min per credential (client {client_rate:g}/min; details "
          f"{client_rate * (1 - BACKGROUND_RESERVE):g}/min)")  # fmt: skip
    print(f"   wall {wall:.1f} s; rolling-window bound {bound:.1f} s at the details' budget "
          f"({smooth_bound:.1f} s as a steady rate; {full_bound:.1f} s at the full pacing); "
          f"wall/bound {wall / bound:.3f}; 429s {too_many}; failed runs {len(failed)}")  # fmt: skip
    for result in failed:
        print(f"   FAILED {result.region}/{result.entity}: {result.error}")
    return {"sweep_wall_s": round(wall, 2), "sweep_bound_s": round(bound, 2),
            "sweep_wall_over_bound": round(wall / bound, 3),
            "sweep_steady_rate_bound_s": round(smooth_bound, 2),
            "sweep_full_pacing_bound_s": round(full_bound, 2), "sweep_calls": sum(calls.values()),
            "sweep_429s": too_many, "failed_runs": len(failed)}  # fmt: skip


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    return {**await calls_a_day(args), **await sweep(args)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=140_000)
    parser.add_argument("--regions", type=int, default=8)
    parser.add_argument("--open", type=int, default=4000, help="open tasks (all regions)")
    parser.add_argument("--changed", type=int, default=3000, help="tasks changed a day")
    parser.add_argument("--rate", type=int, default=240, help="data requests per minute")
    parser.add_argument("--sweep-tasks", type=int, default=2000, help="tasks per region")
    report.run(bench, parser)


if __name__ == "__main__":
    main()
