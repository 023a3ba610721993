"""Runs interrupted (cancelled, or their process killed) lose nothing; runs of one pair never overlap."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from breezeway_daemon.db import runs
from breezeway_daemon.sync import EntitySync, RunResult, SyncContext, SyncRequest

from support.groundtruth import differences, stored
from support.runs import cursor, log_rows
from support.syncenv import SyncEnv as Env

REGION = "region_1"
KILLABLE = Path(__file__).with_name("killable_run.py")
PYTHON = Path(__file__).parents[2] / ".venv" / "bin" / "python"


async def _properties_then_slow_tasks(env: Env) -> SyncContext:
    """Store the region's properties; then one property's tasks at a time, 0.2 s a request."""
    assert (await EntitySync(env.ctx, SyncRequest(REGION, "properties")).run()).status == "success"
    env.sim.faults.latency_s = 0.2
    slow = env.settings.model_copy(update={"task_fetch_concurrency": 1})
    return dataclasses.replace(env.ctx, settings=slow)


def _tasks(region: str = REGION, mode: str = "incremental") -> SyncRequest:
    return SyncRequest(region, "tasks", mode)


async def _truth_matches_what_is_stored(env: Env) -> int:
    """Every stored task equals the truth; answers how many are stored."""
    db = await stored(env.pool, REGION, "tasks")
    truth = env.sim.truth(env.company(REGION), "tasks")
    assert {k: v for k, v in db.items() if truth.get(k) != v} == {}
    return len(db)


async def test_a_cancelled_run_keeps_what_it_committed_and_the_next_run_completes(env: Env) -> None:
    slow = await _properties_then_slow_tasks(env)
    run_task: asyncio.Task[RunResult] | None = None

    def cancel_after_first_batch(region: str, entity: str, counts: runs.RunCounts) -> None:
        assert run_task is not None
        run_task.cancel()

    ctx = dataclasses.replace(slow, on_progress=cancel_after_first_batch)
    run_task = asyncio.create_task(EntitySync(ctx, _tasks()).run())
    with pytest.raises(asyncio.CancelledError):
        await run_task

    [row] = await log_rows(env.pool, REGION, "tasks")
    assert row["sync_status"] == "failed"
    assert row["error_message"] == "interrupted by shutdown"
    assert await cursor(env.pool, REGION, "tasks") is None
    kept = await _truth_matches_what_is_stored(env)
    assert row["records_processed"] == row["records_new"] == kept
    assert 0 < kept < len(env.sim.truth(env.company(REGION), "tasks"))

    env.sim.faults.latency_s = 0
    result = await EntitySync(env.ctx, _tasks()).run()
    assert result.status == "success"
    assert result.counts.records_new == len(env.sim.truth(env.company(REGION), "tasks")) - kept
    assert await differences(env.pool, env.sim, {REGION: env.company(REGION)}, ("tasks",)) == []
    assert await cursor(env.pool, REGION, "tasks") is not None


async def test_a_killed_process_loses_nothing_and_its_row_is_reaped_by_the_next_run(
    env: Env,
) -> None:
    await _properties_then_slow_tasks(env)
    settings = env.settings
    job: dict[str, Any] = {
        "region": REGION,
        "entity": "tasks",
        "settings": {
            "database_url": settings.dsn(),
            "api_base_url": settings.api_base_url,
            "state_dir": str(settings.state_dir),
            "batch_size": settings.batch_size,
            "task_fetch_concurrency": 1,
            "heartbeat_s": 0.2,
            "regions": {
                name: {
                    "client_id": r.client_id,
                    "company_id": r.company_id,
                    "client_secret": r.client_secret.get_secret_value(),
                }  # fmt: skip
                for name, r in settings.regions.items()
            },
        },
    }
    proc = await asyncio.create_subprocess_exec(
        str(PYTHON if PYTHON.exists() else sys.executable), str(KILLABLE),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(job).encode())
    proc.stdin.close()
    try:
        async with asyncio.timeout(30):
            lines = []
            while not (line := (await proc.stdout.readline()).decode()).startswith("stored"):
                assert line, f"the run ended before storing anything: {lines}"
                lines.append(line)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL

    [row] = await log_rows(env.pool, REGION, "tasks")
    assert (row["sync_status"], row["owner_pid"]) == ("running", proc.pid)
    kept = await _truth_matches_what_is_stored(env)
    assert 0 < kept < len(env.sim.truth(env.company(REGION), "tasks"))

    env.sim.faults.latency_s = 0
    result = await EntitySync(env.ctx, _tasks()).run()
    assert result.status == "success"
    assert await differences(env.pool, env.sim, {REGION: env.company(REGION)}, ("tasks",)) == []
    killed, done = await log_rows(env.pool, REGION, "tasks")
    assert killed["sync_status"] == "failed"
    assert f":{proc.pid}) stopped without finishing" in killed["error_message"]
    assert done["sync_status"] == "success"


async def test_a_second_run_of_the_same_pair_skips_while_the_first_runs(env: Env) -> None:
    slow = await _properties_then_slow_tasks(env)
    first_batch = asyncio.Event()
    ctx = dataclasses.replace(slow, on_progress=lambda *_: first_batch.set())
    first = asyncio.create_task(EntitySync(ctx, _tasks()).run())
    await first_batch.wait()

    second = await EntitySync(env.ctx, _tasks()).run()
    assert second.status == "skipped"
    assert second.run_id is None
    assert "another process" in (second.error or "")
    assert not first.done()
    assert (await first).status == "success"
    assert [row["sync_status"] for row in await log_rows(env.pool, REGION, "tasks")] == ["success"]

    # Started at the same moment, from two contexts (two processes' worth): one runs, one skips.
    async with SyncContext.open(env.settings) as other:
        results = await asyncio.gather(
            EntitySync(slow, _tasks()).run(), EntitySync(other, _tasks()).run()
        )
    assert sorted(r.status for r in results) == ["skipped", "success"]
    assert len(await log_rows(env.pool, REGION, "tasks")) == 2


async def test_the_heartbeat_moves_while_a_run_runs(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = await _properties_then_slow_tasks(env)
    seen: list[Any] = []
    beat = runs.heartbeat

    async def observed(conn: Any, run_id: int, counts: runs.RunCounts) -> None:
        await beat(conn, run_id, counts)
        seen.append(await env.pool.fetchrow(
            "SELECT sync_status, heartbeat_at, sync_started_at, records_processed, api_calls_made "
            "FROM breezeway.etl_sync_log WHERE id = $1", run_id))  # fmt: skip

    monkeypatch.setattr(runs, "heartbeat", observed)
    result = await EntitySync(slow, _tasks()).run()
    assert result.status == "success"
    assert len(seen) >= 3
    assert {row["sync_status"] for row in seen} == {"running"}
    times = [row["heartbeat_at"] for row in seen]
    assert times == sorted(set(times))
    assert times[0] > seen[0]["sync_started_at"]
    assert seen[-1]["api_calls_made"] > seen[0]["api_calls_made"] > 0
    assert seen[-1]["records_processed"] > 0
