"""The whole sync against the simulator over HTTP: the database equals the truth."""

from __future__ import annotations

from breezeway_daemon.db import runs
from breezeway_daemon.db.pool import connect
from breezeway_daemon.entities import ENTITY_NAMES
from breezeway_daemon.sync import EntitySync, SyncContext, SyncRequest, run_batch

from support.groundtruth import differences
from support.simenv import SimEnv


async def test_run_all_then_incremental_matches_the_truth(
    sim_env: SimEnv, sync_ctx: SyncContext
) -> None:
    regions = list(sim_env.regions)
    first = await run_batch(sync_ctx, regions, ENTITY_NAMES)
    assert [r for r in first if r.status != "success"] == []
    assert await differences(sync_ctx.pool, sim_env.sim, sim_env.regions) == []

    sim_env.sim.advance(hours=3)
    second = await run_batch(sync_ctx, regions, ENTITY_NAMES)
    assert [r for r in second if r.status != "success"] == []
    full_calls = sum(r.counts.api_calls_made for r in first)
    assert sum(r.counts.api_calls_made for r in second) <= full_calls
    # Deletions of tasks are found by a full refresh.
    await run_batch(sync_ctx, regions, ["tasks"], mode="full")
    assert await differences(sync_ctx.pool, sim_env.sim, sim_env.regions) == []


async def test_orphans_are_not_rejected_while_their_parent_is_synced_elsewhere(
    sim_env: SimEnv, sync_ctx: SyncContext
) -> None:
    region = next(iter(sim_env.regions))
    await run_batch(sync_ctx, [region], ["properties", "reservations", "tasks"])
    pool = sync_ctx.pool
    victim = await pool.fetchval(
        "SELECT property_id FROM breezeway.reservations WHERE region_code = $1 LIMIT 1", region
    )
    for table in ("tasks", "reservations"):
        await pool.execute(
            f"DELETE FROM breezeway.{table} WHERE region_code = $1 AND property_id = $2",
            region,
            victim,
        )
    await pool.execute(
        "DELETE FROM breezeway.properties WHERE region_code = $1 AND id = $2", region, victim
    )
    cursor_before = await runs.read_cursor(pool, region, "reservations")

    holder = await connect(sync_ctx.settings)
    try:
        assert await runs.try_lock_pair(holder, region, "properties")  # "another process"
        result = await EntitySync(sync_ctx, SyncRequest(region, "reservations", "full")).run()
    finally:
        await holder.close()
    assert result.status == "failed"
    assert "being synced by another process" in (result.error or "")
    assert await pool.fetchval("SELECT count(*) FROM breezeway.rejected_records") == 0
    assert await runs.read_cursor(pool, region, "reservations") == cursor_before

    again = await run_batch(sync_ctx, [region], ["properties", "reservations"], mode="full")
    assert [r.status for r in again] == ["success", "success"]
    assert (
        await differences(pool, sim_env.sim, {region: sim_env.regions[region]}, ("reservations",))
        == []
    )
