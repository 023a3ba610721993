"""The daemon SIGKILLed at random moments during its syncs, many times over.

Each iteration starts ``breezeway-daemon serve``, asks it for a batch (SIGUSR1) and kills
it with SIGKILL once a random number of its runs have started, plus a random delay; the
simulator's data moves on between some iterations. After the last kill one more daemon
starts (its start-up sweep fails the killed runs), runs one complete batch, and then the
database equals the ground truth, with no duplicate key and no ``running`` row; so do the
child tables, the comments after one more daily sweep (a comment does not move its task).

``BREEZEWAY_KILL_ITERATIONS`` sets the number of kills (default 10; the issue's figure is
``BREEZEWAY_KILL_ITERATIONS=20 .venv/bin/pytest -s tests/reliability/test_kills.py``),
``BREEZEWAY_KILL_SEED`` the random seed (printed, to replay a failure).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time

from breezeway_daemon.entities import ENTITY_NAMES
from breezeway_daemon.sync import SyncContext, run_batch

from support.daemon import DaemonEnv
from support.groundtruth import (
    CHILD_SPECS,
    CHILD_TABLES,
    EMBEDDED_TABLES,
    LISTED,
    child_differences,
    differences,
    duplicate_keys,
    expected_children,
)
from support.reliability import HOURLY_SAFE_RATES
from support.runs import running_rows

ITERATIONS = int(os.environ.get("BREEZEWAY_KILL_ITERATIONS", "10"))
SEED = int(os.environ.get("BREEZEWAY_KILL_SEED", str(random.randrange(1_000_000))))
RUNS_PER_BATCH = 2 * len(ENTITY_NAMES)
DAEMON_SETTINGS = {
    "hourly_entities": ",".join(ENTITY_NAMES),
    "batch_size": "10",
    "page_size": "10",
    "task_fetch_concurrency": "2",
    "heartbeat_s": "0.5",
}


async def test_sigkill_at_random_moments_then_one_more_batch_equals_the_truth(
    daemon_env: DaemonEnv,
) -> None:
    env = daemon_env
    rng = random.Random(SEED)
    env.sim.rates = HOURLY_SAFE_RATES
    env.sim.faults.latency_s = 0.01
    # Each daemon is a new process, with a new pacer that cannot know what the killed one
    # sent within the API's minute; the rate limit is the API tests' subject, not this one's.
    env.sim.faults.data_rate_limit_per_minute = None
    pool_ctx = SyncContext.open(env.settings, application_name="bw-reliability")
    async with pool_ctx as ctx:
        pool = ctx.pool
        # Tokens first: a login killed half-way would cost a minute of the auth rate limit.
        for region in env.regions:
            await ctx.api.tokens.get(region)

        started = time.monotonic()
        kills_mid_run = advances = 0
        for iteration in range(ITERATIONS):
            daemon = await env.start(**DAEMON_SETTINGS)
            # Its start-up sweep failed every run the previous (killed) daemon left running.
            assert await running_rows(pool) == [], f"iteration {iteration}: rows left running"
            begin = len(daemon.events)
            starts = rng.randint(1, RUNS_PER_BATCH)
            daemon.signal(signal.SIGUSR1)

            def reached(
                events: list[dict[str, object]], begin: int = begin, n: int = starts
            ) -> bool:
                later = events[begin:]
                return (sum(e.get("event") == "run_started" for e in later) >= n
                        or any(e.get("event") == "batch_finished" for e in later))  # fmt: skip

            await daemon.wait_until(reached)
            await asyncio.sleep(rng.uniform(0, 0.4))  # a random moment, not an event
            await daemon.kill()
            left = await running_rows(pool)
            kills_mid_run += bool(left)
            if rng.random() < 0.5:
                env.sim.advance(hours=0.25)
                advances += 1

        # A last daemon: it sweeps, runs one complete batch, and stops.
        env.sim.faults.latency_s = 0
        daemon = await env.start(**DAEMON_SETTINGS)
        assert await running_rows(pool) == []
        after = len(daemon.events)
        daemon.signal(signal.SIGUSR1)
        finished = daemon.events[await daemon.wait_event("batch_finished", after=after)]
        failures = [e for e in daemon.events[after:] if e.get("event") == "run_failed"]
        assert (finished["runs"], finished["failed"]) == (RUNS_PER_BATCH, 0), failures[:3]
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait_exit(30) == 0

        assert await running_rows(pool) == []
        assert await duplicate_keys(pool) == {}  # entity and child tables
        assert await differences(pool, env.sim, env.regions) == []
        # The child tables too: the embedded ones and the requirements (a change moves the
        # task) now; the comments (added without moving the task) after the daily sweep.
        compare = (*EMBEDDED_TABLES, "task_requirements")
        assert await child_differences(pool, env.sim, env.regions, compare) == []
        sweep = await run_batch(ctx, list(env.regions), ["task_details"], mode="full")
        assert [(r.region, r.error) for r in sweep if r.failed] == []
        assert await child_differences(pool, env.sim, env.regions) == []
        assert await duplicate_keys(pool) == {}
        failed = await pool.fetch(
            "SELECT error_message FROM breezeway.etl_sync_log WHERE sync_status = 'failed'"
        )
        assert all(r["error_message"].startswith("abandoned: ") for r in failed), {
            r["error_message"] for r in failed
        }
        compared = sum(len(env.sim.truth(c, e)) for c in env.regions.values() for e in LISTED)
        compared += sum(
            len(expected_children(env.sim, c, CHILD_SPECS[t]))
            for c in env.regions.values()
            for t in CHILD_TABLES
        )
        print(
            f"\nkills: {ITERATIONS} SIGKILLs (seed {SEED}), {kills_mid_run} with runs in "
            f"progress, {len(failed)} killed runs failed by the next start, {advances} "
            f"simulator advances; {compared} records and child rows compared with the truth, 0 differences; "
            f"{time.monotonic() - started:.0f} s"
        )
        # Most kills must land during a run, or the test proves little.
        assert kills_mid_run >= ITERATIONS * 2 // 3, kills_mid_run
