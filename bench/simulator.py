"""How many task listings per second the simulator serves over real HTTP at dense scale.

    .venv/bin/python bench/simulator.py [--duration 10] [--concurrency 16] [--client-procs N]

The simulator (one company at ``dense`` scale: 500 properties, 50,000 tasks; rate limits off)
runs in its own process, served by uvicorn on 127.0.0.1, as a daemon benchmark would run it.
Client processes (``--client-procs``) each run ``--concurrency`` concurrent httpx requests, in
a loop for ``--duration`` seconds: ``GET /public/inventory/v1/task/?home_id=<random>&limit=100``
(a full page of 100 tasks, about 175 kB). A warm-up pass first lists every property's tasks
once, so the figure is the steady state (task JSON cached); the warm-up rate is printed too.

Prints a few lines, then as the last line a JSON object with ``task_list_requests_per_s``.
It asserts nothing. On a machine with few cores the client processes compete with the server
for CPU (httpx spends more CPU reading a page than the simulator spends serving it), so the
measured rate is a lower bound; the server's own CPU time per request is printed too, with the
rate one server core could sustain.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

import httpx
import orjson

from simprocess import SimProcess

SCALE = "dense"


async def _login(client: httpx.AsyncClient) -> dict[str, str]:
    answer = await client.post(
        "/public/auth/v1/",
        json={"client_id": "sim-client-1", "client_secret": "sim-secret-1-not-real"},
    )
    answer.raise_for_status()
    return {"Authorization": f"JWT {answer.json()['access_token']}"}


async def _property_ids(client: httpx.AsyncClient, headers: dict[str, str]) -> list[int]:
    ids: list[int] = []
    page = 1
    while True:
        answer = await client.get(
            "/public/inventory/v1/property", params={"page": page, "limit": 100}, headers=headers
        )
        answer.raise_for_status()
        body = orjson.loads(answer.content)
        ids.extend(r["id"] for r in body["results"])
        if page >= body["total_pages"]:
            return ids
        page += 1


async def _hammer(
    base_url: str,
    home_ids: list[int],
    duration_s: float,
    concurrency: int,
    seed: int,
    sequential: bool = False,
) -> dict[str, Any]:
    """Run ``concurrency`` request loops for ``duration_s``; answers counts."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    counts = {"requests": 0, "errors": 0, "bytes": 0}
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        headers = await _login(client)
        queue = list(home_ids)
        deadline = time.perf_counter() + duration_s

        async def worker() -> None:
            while time.perf_counter() < deadline:
                if sequential:
                    if not queue:
                        return
                    home_id = queue.pop()
                else:
                    home_id = rng.choice(home_ids)
                answer = await client.get(
                    "/public/inventory/v1/task/",
                    params={"home_id": home_id, "limit": 100},
                    headers=headers,
                )
                counts["requests"] += 1
                counts["bytes"] += len(answer.content)
                if answer.status_code != 200:
                    counts["errors"] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        counts["elapsed_s"] = time.perf_counter() - started
    return counts


def _client_proc(
    conn: Connection,
    base_url: str,
    home_ids: list[int],
    duration: float,
    concurrency: int,
    seed: int,
) -> None:
    conn.send(asyncio.run(_hammer(base_url, home_ids, duration, concurrency, seed)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load (default 10)")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="concurrent requests per client process"
    )
    parser.add_argument(
        "--client-procs",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="client processes (default: CPUs, at most 4)",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    ctx = mp.get_context("spawn")
    try:
        sim = SimProcess(1, SCALE, args.seed, data_rate_limit=None, auth_limit=None)
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    with sim:
        base_url = sim.base_url
        print(
            f"simulator: {SCALE} scale, 1 company, generated in {sim.prepare_s:.1f} s, at {base_url}"
        )

        async def discover() -> list[int]:
            async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
                return await _property_ids(client, await _login(client))

        home_ids = asyncio.run(discover())
        warm = asyncio.run(
            _hammer(base_url, home_ids, 600, args.concurrency, args.seed, sequential=True)
        )
        print(
            f"warm-up (first listing of each of {len(home_ids)} properties, tasks rendered):"
            f" {warm['requests'] / warm['elapsed_s']:.0f} requests/s"
        )

        cpu_before = sim.cpu_s()
        results = []
        procs = []
        for n in range(args.client_procs):
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_client_proc,
                args=(send, base_url, home_ids, args.duration, args.concurrency, args.seed + n),
            )
            proc.start()
            procs.append((proc, recv))
        for proc, recv in procs:
            results.append(recv.recv())
            proc.join()
        server_cpu_s = sim.cpu_s() - cpu_before

    requests = sum(r["requests"] for r in results)
    errors = sum(r["errors"] for r in results)
    elapsed = max(r["elapsed_s"] for r in results)
    rate = requests / elapsed
    mbytes = sum(r["bytes"] for r in results) / elapsed / 1e6
    print(
        f"steady state: {requests} task listings in {elapsed:.1f} s with {args.client_procs} client"
        f" process(es) x {args.concurrency} concurrent: {rate:.0f} requests/s"
        f" ({rate * 100:.0f} tasks/s, {mbytes:.0f} MB/s), {errors} errors; {os.cpu_count()} CPUs"
    )
    per_request_ms = server_cpu_s / requests * 1000
    print(
        f"server CPU: {server_cpu_s:.1f} s for {requests} requests = {per_request_ms:.2f} ms each,"
        f" so one server core could serve about {1000 / per_request_ms:.0f} requests/s"
    )
    print(
        orjson.dumps(
            {
                "task_list_requests_per_s": round(rate, 1),
                "tasks_per_s": round(rate * 100),
                "warmup_requests_per_s": round(warm["requests"] / warm["elapsed_s"], 1),
                "server_cpu_ms_per_request": round(per_request_ms, 3),
                "server_core_capacity_requests_per_s": round(1000 / per_request_ms),
                "errors": errors,
                "client_procs": args.client_procs,
                "concurrency": args.concurrency,
                "duration_s": args.duration,
                "cpus": os.cpu_count(),
            }
        ).decode()
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
