"""The watchdog's sweep: no run stays ``running`` when nothing runs it anymore."""

from __future__ import annotations

import asyncio
import dataclasses
import os

import asyncpg

from breezeway_daemon.config import Settings
from breezeway_daemon.db import runs
from breezeway_daemon.retention import purge_sync_log
from breezeway_daemon.sync import EntitySync, RunResult, SyncContext, SyncRequest
from breezeway_daemon.watchdog import sweep

from support.runs import dead_pid, running_row
from support.simenv import SimEnv

# The runbook's "ETL Stuck in running Status" query, verbatim.
RUNBOOK_STUCK_QUERY = """
SELECT * FROM breezeway.etl_sync_log
WHERE sync_status = 'running'
  AND sync_started_at < NOW() - INTERVAL '1 hour';
"""


async def row(pool: asyncpg.Pool, run_id: int) -> asyncpg.Record:
    return await pool.fetchrow(
        "SELECT sync_status, sync_completed_at, error_message FROM breezeway.etl_sync_log "
        "WHERE id = $1",
        run_id,
    )


async def test_a_stale_heartbeat_is_failed_as_stuck(
    clean_db: asyncpg.Pool, base_settings: Settings
) -> None:
    stale = await running_row(clean_db, "tasks", started="20 minutes", heartbeat="6 minutes")
    [failed] = await sweep(clean_db, base_settings)
    assert failed.run_id == stale and failed.reason.startswith("stuck: no heartbeat for 6 minutes")
    found = await row(clean_db, stale)
    assert found["sync_status"] == "failed" and found["sync_completed_at"] is not None
    assert found["error_message"] == failed.reason
    assert "some-other-host:4242" in found["error_message"]


async def test_a_run_of_this_host_whose_process_is_gone_is_abandoned(
    clean_db: asyncpg.Pool, base_settings: Settings
) -> None:
    # Fresh heartbeat and start: only the dead owner gives it away.
    gone = await running_row(
        clean_db, "tasks", started="10 seconds", heartbeat="1 second", host=runs.HOST,
        pid=await dead_pid(),
    )  # fmt: skip
    # This very process, which does not know the run: a previous process with a reused pid.
    reused = await running_row(
        clean_db, "people", started="10 seconds", heartbeat="1 second", host=runs.HOST,
        pid=os.getpid(),
    )  # fmt: skip
    failed = {r.run_id: r.reason for r in await sweep(clean_db, base_settings)}
    assert set(failed) == {gone, reused}
    assert failed[gone].startswith("abandoned:") and "is gone" in failed[gone]
    assert failed[reused].startswith("abandoned:")
    for run_id in (gone, reused):
        assert (await row(clean_db, run_id))["sync_status"] == "failed"


async def test_healthy_running_rows_are_left_alone(
    clean_db: asyncpg.Pool, base_settings: Settings
) -> None:
    elsewhere = await running_row(clean_db, "tasks", started="30 minutes", heartbeat="20 seconds")
    here_alive = await running_row(
        clean_db, "people", started="2 minutes", heartbeat="5 seconds", host=runs.HOST,
        pid=os.getppid(),
    )  # fmt: skip
    never_beat = await running_row(clean_db, "tags", started="1 minute", heartbeat=None)
    assert await sweep(clean_db, base_settings) == []
    for run_id in (elsewhere, here_alive, never_beat):
        found = await row(clean_db, run_id)
        assert found["sync_status"] == "running" and found["error_message"] is None


async def test_a_run_past_the_maximum_run_time_is_failed_even_with_a_fresh_heartbeat(
    clean_db: asyncpg.Pool, base_settings: Settings
) -> None:
    over = await running_row(clean_db, "tasks", started="61 minutes", heartbeat="10 seconds")
    [failed] = await sweep(clean_db, base_settings)
    assert failed.run_id == over
    assert failed.reason.startswith("exceeded the maximum run time of 60 minutes")
    assert (await row(clean_db, over))["error_message"] == failed.reason


async def test_an_over_time_run_of_this_process_is_cancelled_and_its_row_says_why(
    sim_env: SimEnv, sync_ctx: SyncContext
) -> None:
    pool = sync_ctx.pool
    assert (await EntitySync(sync_ctx, SyncRequest("region_1", "properties")).run()).status == (
        "success"
    )
    # Slow tasks, a batch at a time, so that the run is still going when the sweep comes.
    sim_env.sim.faults.latency_s = 0.2
    slow = sync_ctx.settings.model_copy(update={"task_fetch_concurrency": 1, "batch_size": 2})
    stored_a_batch = asyncio.Event()
    ctx = dataclasses.replace(sync_ctx, settings=slow, on_progress=lambda *_: stored_a_batch.set())
    run = asyncio.create_task(EntitySync(ctx, SyncRequest("region_1", "tasks")).run())
    await asyncio.wait_for(stored_a_batch.wait(), 30)
    [run_id] = ctx.active_runs
    # Started (by the database's account) well over an hour ago.
    await pool.execute(
        "UPDATE breezeway.etl_sync_log SET sync_started_at = now() - interval '2 hours' "
        "WHERE id = $1",
        run_id,
    )
    [failed] = await sweep(pool, slow, ctx.active_runs)
    assert failed.run_id == run_id
    assert failed.reason.startswith("exceeded the maximum run time")

    result: RunResult = await asyncio.wait_for(run, 30)
    assert result.status == "failed" and result.error == failed.reason
    assert run_id not in ctx.active_runs
    found = await row(pool, run_id)
    assert found["sync_status"] == "failed" and found["error_message"] == failed.reason
    # The run ended well before it would have finished on its own.
    truth = sim_env.sim.truth(sim_env.regions["region_1"], "tasks")
    stored_tasks = await pool.fetchval(
        "SELECT count(*) FROM breezeway.tasks WHERE region_code = 'region_1'"
    )
    assert stored_tasks < len(truth)


async def test_after_a_sweep_the_runbooks_stuck_query_finds_nothing(
    clean_db: asyncpg.Pool, base_settings: Settings
) -> None:
    await running_row(clean_db, "tasks", started="3 hours", heartbeat="2 hours 50 minutes")
    await running_row(clean_db, "reservations", started="90 minutes", heartbeat="5 seconds")
    await running_row(clean_db, "properties", started="2 hours", heartbeat=None, region="region_2")
    await running_row(
        clean_db, "people", started="65 minutes", heartbeat="1 second", host=runs.HOST,
        pid=os.getppid(),
    )  # fmt: skip
    healthy = await running_row(clean_db, "supplies", started="3 minutes", heartbeat="2 seconds")
    assert len(await clean_db.fetch(RUNBOOK_STUCK_QUERY)) == 4

    assert len(await sweep(clean_db, base_settings)) == 4
    assert await clean_db.fetch(RUNBOOK_STUCK_QUERY) == []
    assert (await row(clean_db, healthy))["sync_status"] == "running"
    # A second sweep has nothing left to do.
    assert await sweep(clean_db, base_settings) == []


async def test_purge_keeps_running_rows_and_each_pairs_latest_success(
    clean_db: asyncpg.Pool,
) -> None:
    from datetime import timedelta

    old_running = await running_row(clean_db, "tasks", started="30 days", heartbeat="30 days")
    ids = {}
    for name, status, age in [
        ("old_success", "success", "20 days"),
        ("latest_success", "success", "15 days"),
        ("old_failed", "failed", "10 days"),
        ("recent_failed", "failed", "1 day"),
    ]:
        ids[name] = await clean_db.fetchval(
            "INSERT INTO breezeway.etl_sync_log (region_code, entity_type, sync_status, "
            "sync_started_at, sync_completed_at) VALUES ('region_1', 'properties', $1, "
            "now() - $2::text::interval, now() - $2::text::interval) RETURNING id",
            status,
            age,
        )
    counts = await purge_sync_log(clean_db, timedelta(days=7))
    assert counts["sync_log_rows"] == 2
    left = {r["id"] for r in await clean_db.fetch("SELECT id FROM breezeway.etl_sync_log")}
    assert left == {old_running, ids["latest_success"], ids["recent_failed"]}
