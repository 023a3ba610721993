"""Failures: one property's tasks, a region's properties; what is kept, what is said, what waits."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from breezeway_daemon.db.connection import database_error
from breezeway_daemon.db.lease import RunLease
from breezeway_daemon.entities import ENTITY_NAMES
from breezeway_daemon.sync import EntitySync, SyncRequest, run_batch
from breezeway_sim import EntityRates, Rates

from support.groundtruth import differences, live_ids, stored
from support.runs import cursor, log_rows
from support.syncenv import SyncEnv as Env

REGION = "region_1"


async def test_one_propertys_tasks_failing_fails_the_run_keeps_the_rest_and_the_cursor(
    env: Env,
) -> None:
    company = env.company(REGION)
    assert all(r.status == "success" for r in await run_batch(env.ctx, [REGION], ENTITY_NAMES))
    before_cursor = await cursor(env.pool, REGION, "tasks")
    [success] = await log_rows(env.pool, REGION, "tasks")
    env.sim.rates = Rates(tasks=EntityRates(0.2, 0.5, 0.1), properties=EntityRates(0, 0, 0))
    env.sim.advance(hours=2)
    truth = env.sim.truth(company, "tasks")
    broken = min(env.sim.data(company).properties)
    env.sim.faults.fail_property_tasks = {broken}

    result = await EntitySync(env.ctx, SyncRequest(REGION, "tasks")).run()
    assert result.status == "failed"
    assert result.error is not None and f"property ids {broken}" in result.error
    assert "tasks of 1 of 6 properties could not be fetched" in result.error
    assert await cursor(env.pool, REGION, "tasks") == before_cursor
    row = (await log_rows(env.pool, REGION, "tasks"))[-1]
    assert (row["sync_status"], row["error_message"]) == ("failed", result.error)
    assert row["last_successful_sync_at"] == success["last_successful_sync_at"]
    assert row["api_calls_made"] == result.counts.api_calls_made > 6
    assert row["cursor_to"] is None
    # Every other property's tasks are stored as they are now; the broken one's are not touched.
    db = await stored(env.pool, REGION, "tasks")
    others = {k: v for k, v in truth.items() if v["home_id"] != broken}
    assert {k for k, v in others.items() if db.get(k) != v} == set()
    behind = {k for k, v in truth.items() if v["home_id"] == broken and db.get(k) != v}
    assert behind, "the broken property's tasks did not change: the test proves nothing"

    # A full refresh that misses a property marks no deletion at all.
    gone = set(db) - set(truth)
    assert gone
    full = await EntitySync(env.ctx, SyncRequest(REGION, "tasks", "full")).run()
    assert full.status == "failed"
    assert full.counts.records_deleted == 0
    assert gone <= await live_ids(env.pool, REGION, "tasks")

    env.sim.faults.fail_property_tasks = set()
    again = await EntitySync(env.ctx, SyncRequest(REGION, "tasks", "full")).run()
    assert again.status == "success"
    assert await differences(env.pool, env.sim, {REGION: company}, ("tasks",)) == []
    assert await cursor(env.pool, REGION, "tasks") > before_cursor


async def test_a_failed_properties_run_skips_its_dependants_not_other_regions(env: Env) -> None:
    regions = list(env.regions)
    assert all(r.status == "success" for r in await run_batch(env.ctx, regions, ENTITY_NAMES))
    successes = {
        e: (await log_rows(env.pool, REGION, e))[-1]["last_successful_sync_at"]
        for e in ENTITY_NAMES
    }
    env.sim.faults.auth_rate_limit_per_minute = None
    env.sim.disable_client(env.company(REGION))
    env.sim.advance(hours=1)

    results = await run_batch(env.ctx, regions, ENTITY_NAMES)
    mine = {r.entity: r for r in results if r.region == REGION}
    assert mine["properties"].status == "failed"
    assert "inactive" in (mine["properties"].error or "")
    for entity in ("reservations", "tasks"):
        assert (mine[entity].status, mine[entity].error) == ("failed", "skipped: properties failed")
    for entity in ENTITY_NAMES:
        row = (await log_rows(env.pool, REGION, entity))[-1]
        assert row["sync_status"] == "failed"
        assert row["id"] == mine[entity].run_id
        assert row["last_successful_sync_at"] == successes[entity]
        if entity in ("reservations", "tasks"):
            assert row["error_message"] == "skipped: properties failed"
            assert row["sync_completed_at"] is not None
    # The other region ran everything, and is the truth.
    assert [r.status for r in results if r.region != REGION] == ["success"] * len(ENTITY_NAMES)
    others = {r: c for r, c in env.regions.items() if r != REGION}
    assert await differences(env.pool, env.sim, others) == []


async def test_a_failed_runs_end_is_written_again_through_another_connection(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Right after the database dropped connections, pooled ones can fail on first use
    # ("another operation is in progress" while the server's goodbye is being read): each
    # is dropped, and the run's end is written through the next one.
    original = RunLease._write_end
    stale_pids: list[int] = []

    async def stale_at_first(self, conn, success, error, cursor_to):  # type: ignore[no-untyped-def]
        if not success and len(stale_pids) < 3:
            stale_pids.append(conn.get_server_pid())
            raise database_error(  # as the connection raises it
                asyncpg.InternalClientError(
                    "cannot switch to state 15; another operation (2) is in progress"
                )
            )
        return await original(self, conn, success, error, cursor_to)

    monkeypatch.setattr(RunLease, "_write_end", stale_at_first)
    env.sim.faults.auth_rate_limit_per_minute = None
    env.sim.disable_client(env.company(REGION))
    result = await EntitySync(env.ctx, SyncRequest(REGION, "properties")).run()
    assert result.status == "failed"
    assert len(stale_pids) == 3
    row = (await log_rows(env.pool, REGION, "properties"))[-1]
    assert (row["sync_status"], row["error_message"]) == ("failed", result.error)
    assert "inactive" in (result.error or "") and "not recorded" not in (result.error or "")
    async with asyncio.timeout(10):  # each stale connection was closed, not handed out again
        while True:  # a backend leaves pg_stat_activity a moment after its client closed it
            left = await env.pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", stale_pids
            )
            if not left:
                break
            await asyncio.sleep(0.05)
