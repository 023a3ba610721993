"""The whole sync against the simulator over HTTP: the database equals the truth."""

from __future__ import annotations

from breezeway_daemon.entities import ENTITY_NAMES
from breezeway_daemon.sync import SyncContext, run_batch

from groundtruth import differences
from simenv import SimEnv


async def test_run_all_then_incremental_matches_the_truth(sim_env: SimEnv, sync_ctx: SyncContext) -> None:
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
