"""Database faults during a sync: backends terminated, the server restarted.

Each batch is one transaction: after any of these faults no batch is partly visible, the
run ends (failed, with the cause) instead of staying ``running``, the cursor stays where it
was, and the next run completes and equals the ground truth.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr

from breezeway_daemon.alerts import report_batch
from breezeway_daemon.config import Settings
from breezeway_daemon.db import runs
from breezeway_daemon.db.lease import LOST_LOCK
from breezeway_daemon.entities import ENTITY_NAMES
from breezeway_daemon.errors import ErrorKind
from breezeway_daemon.sync import EntitySync, SyncRequest, run_batch
from breezeway_sim import Simulator

from support.batches import Batches, BatchRecord
from support.database import EmbeddedServer, terminate
from support.groundtruth import differences
from support.reliability import LOCK_APP, REL_APP, SCALE, RelEnv, served
from support.runs import running_rows

REGION = "region_1"


async def _properties(env: RelEnv) -> None:
    result = await EntitySync(env.ctx, SyncRequest(REGION, "properties")).run()
    assert result.status == "success", result.error


async def _row(pool: asyncpg.Pool, run_id: int | None) -> asyncpg.Record:
    assert run_id is not None
    return await pool.fetchrow("SELECT * FROM breezeway.etl_sync_log WHERE id = $1", run_id)


async def test_a_batch_whose_backend_is_terminated_mid_transaction_is_rolled_back_whole(
    rel_env: RelEnv, batches: Batches, admin: asyncpg.Connection
) -> None:
    env = rel_env
    await _properties(env)
    batches.batches.clear()
    victim: list[BatchRecord] = []

    async def terminate_third_tasks_batch(conn: asyncpg.Connection, batch: BatchRecord) -> None:
        tasks = batches.of("tasks")
        if len(tasks) >= 3 and batch is tasks[2]:
            victim.append(batch)
            # Its keys are classified, nothing written yet: the backend dies inside the transaction.
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", conn.get_server_pid())

    batches.before_write = terminate_third_tasks_batch
    result = await EntitySync(env.ctx, SyncRequest(REGION, "tasks")).run()

    assert victim, "the fault was never injected"
    assert result.status == "failed"
    assert result.error_kind is ErrorKind.DATABASE
    assert (result.error or "").startswith("lost the database connection: "), result.error
    assert victim[0].committed is False
    assert await batches.visible(env.pool, victim[0]) == 0
    assert await batches.partially_visible(env.pool) == []
    committed = sum(len(b.ids) for b in batches.of("tasks") if b.committed)
    assert 0 < committed < len(env.sim.truth(env.company(REGION), "tasks"))
    row = await _row(env.pool, result.run_id)
    assert (row["sync_status"], row["error_message"]) == ("failed", result.error)
    assert row["records_new"] == row["records_processed"] == committed
    assert await runs.read_cursor(env.pool, REGION, "tasks") is None
    assert await running_rows(env.pool) == []

    again = await EntitySync(env.ctx, SyncRequest(REGION, "tasks")).run()
    assert again.status == "success", again.error
    assert again.counts.records_new == len(env.sim.truth(env.company(REGION), "tasks")) - committed
    assert (
        await differences(env.pool, env.sim, {REGION: env.company(REGION)}, ("properties", "tasks"))
        == []
    )


@pytest.mark.parametrize("target", ["lock", "pool", "all"])
async def test_connections_terminated_during_a_sync_end_the_run_cleanly(
    rel_env: RelEnv, batches: Batches, admin: asyncpg.Connection, target: str
) -> None:
    env = rel_env
    await _properties(env)
    batches.batches.clear()
    env.sim.faults.latency_s = 0.02
    apps = {"lock": (LOCK_APP,), "pool": (REL_APP,), "all": (LOCK_APP, REL_APP)}[target]
    terminated: list[int] = []

    async def kill_during_third_tasks_batch(conn: asyncpg.Connection, batch: BatchRecord) -> None:
        # Inside a batch's transaction, so that the run surely has work left (killed from
        # a task of its own, the run could finish first).
        tasks = batches.of("tasks")
        if len(tasks) >= 3 and batch is tasks[2] and not terminated:
            terminated.append(await terminate(admin, env.database, apps))

    batches.before_write = kill_during_third_tasks_batch
    result = await EntitySync(env.ctx, SyncRequest(REGION, "tasks")).run()
    assert terminated and terminated[0] >= 1
    assert result.status == "failed"
    assert result.error_kind is ErrorKind.DATABASE
    assert (result.error or "").startswith("lost the database connection"), result.error
    assert await batches.partially_visible(env.pool) == []
    row = await _row(env.pool, result.run_id)
    assert (row["sync_status"], row["error_message"]) == ("failed", result.error)
    assert await running_rows(env.pool) == []
    assert await runs.read_cursor(env.pool, REGION, "tasks") is None

    env.sim.faults.latency_s = 0
    results = await run_batch(env.ctx, list(env.regions), ENTITY_NAMES)
    assert [r.status for r in results] == ["success"] * len(results), [r.error for r in results]
    assert await differences(env.pool, env.sim, env.regions) == []


async def test_a_run_that_loses_its_lock_connection_fails_as_a_database_error(
    rel_env: RelEnv, batches: Batches, admin: asyncpg.Connection
) -> None:
    """Only the run's own connection (the one holding its lock) goes away, and the API turns
    slow: the heartbeat notices while the run waits for a page, and ends the run, failed,
    kind ``database`` (as a run whose pool connection went away), saying it lost its lock.
    (The test above loses the same connection, but there the run may end before the
    heartbeat notices, and its end is then refused by the lost connection instead.)"""
    env = rel_env
    await _properties(env)
    batches.batches.clear()
    terminated: list[int] = []

    async def lose_the_lock(conn: asyncpg.Connection, batch: BatchRecord) -> None:
        if batch is batches.of("tasks")[0]:  # one batch only: ``admin`` serves one at a time
            terminated.append(await terminate(admin, env.database, (LOCK_APP,)))
            env.sim.faults.latency_s = 10.0  # the heartbeat (every 0.2 s) comes first

    batches.before_write = lose_the_lock
    env.sim.faults.latency_s = 0.05  # pages come slower than batches are written
    result = await EntitySync(env.ctx, SyncRequest(REGION, "tasks")).run()
    assert terminated and terminated[0] >= 1
    assert result.status == "failed"
    assert result.error_kind is ErrorKind.DATABASE
    assert (result.error or "").startswith(LOST_LOCK), result.error
    assert await batches.partially_visible(env.pool) == []
    row = await _row(env.pool, result.run_id)
    assert (row["sync_status"], row["error_message"]) == ("failed", result.error)
    assert await running_rows(env.pool) == []


async def test_a_server_restart_during_a_sync_fails_the_run_and_the_next_run_completes(
    embedded_server: EmbeddedServer, base_settings: Settings, tmp_path: Path
) -> None:
    server = embedded_server
    sim = Simulator(companies=1, scale=SCALE, seed=37)
    base = base_settings.model_copy(update={"database_url": SecretStr(server.url)})
    overrides = {"db_connect_attempts": 2, "db_connect_timeout_s": 2}
    async with served(base, sim, tmp_path, **overrides) as env:
        await _properties(env)
        env.sim.faults.latency_s = 0.02
        stopped: list[asyncio.Task[None]] = []

        def stop_after_second_batch(region: str, entity: str, counts: runs.RunCounts) -> None:
            if counts.records_processed >= 20 and not stopped:
                stopped.append(asyncio.create_task(server.stop()))

        ctx = dataclasses.replace(env.ctx, on_progress=stop_after_second_batch)
        result = await EntitySync(ctx, SyncRequest(REGION, "tasks")).run()
        await asyncio.gather(*stopped)
        assert stopped, "the server was never stopped"
        assert result.status == "failed"
        assert result.error_kind is ErrorKind.DATABASE
        assert "database is unreachable" in (result.error or "")

        # While it is down, a whole batch still ends: every run failed, saying why, and
        # its alerts are written (alerts.log needs no database).
        down = await run_batch(env.ctx, [REGION], ENTITY_NAMES, trigger="schedule-hourly")
        assert {r.status for r in down} == {"failed"}
        for r in down:
            assert r.error_kind is ErrorKind.DATABASE or r.error in {
                "skipped: properties failed",
                "skipped: tasks failed",
            }
        assert all("database is unreachable" in (r.error or "") for r in down
                   if not (r.error or "").startswith("skipped: ")), [r.error for r in down]  # fmt: skip
        await report_batch(env.alerts, "Hourly ETL", down)
        subjects = [a.subject for a in env.alerts_log()]
        assert "📊 Hourly ETL Summary: 7 failures" in subjects, subjects

        await server.start()
        env.sim.faults.latency_s = 0
        again = await EntitySync(env.ctx, SyncRequest(REGION, "tasks")).run()
        assert again.status == "success", again.error
        failed = await _row(env.pool, result.run_id)
        assert failed["sync_status"] == "failed"
        assert "database is unreachable" in failed["error_message"]
        assert await running_rows(env.pool) == []
        assert await differences(env.pool, env.sim, env.regions, ("properties", "tasks")) == []
