"""How fast the API client goes against the simulator over HTTP, and the rate it holds paced.

    .venv/bin/python bench/client.py [--duration 8] [--in-flight 16]
                                     [--paced-duration 15] [--paced-window 6]

The simulator (one company at ``dense`` scale) runs in its own process, served by uvicorn on
127.0.0.1; the client (``BreezewayApi``: token cache on PostgreSQL, pacer, retries, httpx) runs
in this one. PostgreSQL: ``DATABASE_URL``, else 127.0.0.1:5432 as user postgres; a throwaway
database is created, migrated and dropped.

1. Pacing off (``requests_per_minute`` = 10^9, ``--in-flight`` requests in flight, simulator
   limits off), for ``--duration`` s each: ``GET /companies`` (a tiny answer: the client's own
   cost per request, a token lookup in PostgreSQL included) and ``GET /task/?home_id=..``
   (a full page of 100 tasks, ~175 kB: what a task sync does).
2. Pacing on (``requests_per_minute`` = 180, the default), for ``--paced-duration`` s: as many
   ``GET /companies`` as the pacer admits. The window is ``--paced-window`` seconds (default 6:
   180 per 6 s, so the test of the limiter takes seconds); ``--paced-window 60`` is the real
   minute (run it with ``--paced-duration 70`` or more, the simulator's 200/min limit then on).
   The simulator counts the requests it received in its busiest window of that length.

Prints figures, then as the last line a JSON object. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from simprocess import SimProcess
from throwaway import create_database, drop_database

PACING_MARGIN = 60.25 / 60  # the pacer's window is the API's plus this margin


async def _load(client: Any, duration_s: float, workers: int, request: Any) -> dict[str, float]:
    """``workers`` loops of ``request(client)`` for ``duration_s``; answers counts."""
    done = {"requests": 0, "errors": 0}
    deadline = time.perf_counter() + duration_s

    async def worker() -> None:
        while time.perf_counter() < deadline:
            try:
                await request(client)
            except Exception:  # a benchmark counts failures, it does not stop on them
                done["errors"] += 1
            else:
                done["requests"] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    elapsed = time.perf_counter() - started
    return {**done, "elapsed_s": elapsed, "per_s": done["requests"] / elapsed}


async def run(args: argparse.Namespace, sim: SimProcess) -> dict[str, Any]:
    from breezeway_daemon.api.client import BreezewayApi
    from breezeway_daemon.config import load_settings
    from breezeway_daemon.db.pool import create_pool

    database_url = await create_database("client")
    company = sim.companies[0]
    homes = company.property_ids
    rng = random.Random(args.seed)

    def settings(**overrides: Any) -> Any:
        values: dict[str, Any] = {
            "database_url": database_url,
            "state_dir": Path("/tmp"),
            "api_base_url": sim.base_url,
            "regions": {"bench": company.credentials()},
        }
        values.update(overrides)
        return load_settings(Path("/nonexistent/bench.env"), **values)

    async def companies(client: Any) -> None:
        await client.get("/companies")

    async def task_page(client: Any) -> None:
        await client.get("/task/", {"home_id": rng.choice(homes), "limit": 100})

    results: dict[str, Any] = {}
    try:
        unpaced = settings(requests_per_minute=1e9, max_in_flight_per_credential=args.in_flight)
        pool = await create_pool(unpaced, max_size=4)
        try:
            api = BreezewayApi(unpaced, pool)
            client = api.client("bench")
            await client.get("/companies")  # log in once
            # Warm the simulator's task rendering so the figure is the steady state.
            await _load(client, 3, args.in_flight, task_page)
            for name, request in (("companies", companies), ("task_page", task_page)):
                sim.reset()
                figures = await _load(client, args.duration, args.in_flight, request)
                results[f"unpaced_{name}_per_s"] = round(figures["per_s"], 1)
                results[f"unpaced_{name}_errors"] = figures["errors"]
                print(
                    f"pacing off, {args.in_flight} in flight, GET {name}: "
                    f"{figures['per_s']:.0f} requests/s "
                    f"({figures['requests']:.0f} in {figures['elapsed_s']:.1f} s, "
                    f"{figures['errors']:.0f} errors)"
                )
            # Baseline: bare httpx on the same connection pool, same token, no client logic.
            token = await api.tokens.get("bench")
            headers = {"Authorization": f"JWT {token}"}

            async def bare(http: Any) -> None:
                answer = await http.get("/public/inventory/v1/companies", headers=headers)
                answer.raise_for_status()

            figures = await _load(api.http, args.duration, args.in_flight, bare)
            results["bare_httpx_companies_per_s"] = round(figures["per_s"], 1)
            print(f"bare httpx (baseline), GET companies: {figures['per_s']:.0f} requests/s")
            await api.aclose()

            window = args.paced_window
            if window >= 60:
                sim.set_faults(data_rate_limit_per_minute=200)
            sim.reset()
            paced = settings(requests_per_minute=180)
            api = BreezewayApi(paced, pool, pacing_window_s=window * PACING_MARGIN)
            client = api.client("bench")
            figures = await _load(client, args.paced_duration, args.in_flight, companies)
            await api.aclose()
            seen = sim.stats(window)[company.client_id]
            limit_per_s = 180 / window
            results.update(
                paced_limit=180,
                paced_window_s=window,
                paced_max_in_window=seen["max_requests_in_window"],
                paced_per_s=round(figures["per_s"], 2),
                paced_limit_per_s=round(limit_per_s, 2),
                paced_rate_limited=seen["rate_limited"],
                paced_duration_s=round(figures["elapsed_s"], 1),
            )
            print(
                f"pacing on, 180 per {window:g} s: the simulator saw at most "
                f"{seen['max_requests_in_window']} requests in any {window:g} s window; "
                f"{figures['per_s']:.1f} requests/s over {figures['elapsed_s']:.1f} s "
                f"(limit {limit_per_s:.1f}/s; the first window's burst is in it), "
                f"{seen['rate_limited']} answered 429"
            )
        finally:
            await pool.close()
    finally:
        await drop_database(database_url)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per unpaced load")
    parser.add_argument("--in-flight", type=int, default=16, help="requests in flight (max 64)")
    parser.add_argument("--paced-duration", type=float, default=15.0)
    parser.add_argument("--paced-window", type=float, default=6.0, help="60 for the real minute")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with SimProcess(1, "dense", args.seed, data_rate_limit=None, auth_limit=None) as sim:
        print(f"simulator: dense scale, 1 company, at {sim.base_url} (own process)")
        results = asyncio.run(run(args, sim))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
