"""Child tables and task details equal the simulator's truth after a full sync, an
incremental sync after the clock moved on, and the daily sweep."""

from __future__ import annotations

from breezeway_daemon.entities import ENTITY_NAMES
from breezeway_daemon.sync import RunResult, run_batch
from breezeway_sim import EntityRates

from support.groundtruth import (
    CHILD_TABLES,
    EMBEDDED_TABLES,
    child_differences,
    differences,
    duplicate_keys,
)
from support.syncenv import SyncEnv as Env

HOURLY = ("properties", "reservations", "tasks", "task_details")


def _bad(results: list[RunResult]) -> list[tuple[str, str, str, str | None]]:
    return [(r.region, r.entity, r.status, r.error) for r in results if r.status != "success"]


async def test_full_incremental_and_sweep_equal_the_truth(env: Env) -> None:
    regions = list(env.regions)
    env.sim.faults.data_rate_limit_per_minute = None  # ~400 calls a minute: truth, not pacing
    env.reconfigure(task_quiet_poll_every=1)  # every property's tasks listed every hour
    first = await run_batch(env.ctx, regions, ENTITY_NAMES, mode="full", trigger="test")
    assert _bad(first) == []
    assert await differences(env.pool, env.sim, env.regions) == []
    assert await child_differences(env.pool, env.sim, env.regions) == []
    for table in CHILD_TABLES:
        assert await env.pool.fetchval(f"SELECT count(*) FROM breezeway.{table}") > 0, table
    details = [r for r in first if r.entity == "task_details"]
    assert all(r.counts.records_new == r.counts.records_processed > 0 for r in details)

    # The clock moves on: tasks change (children come and go), comments arrive without
    # moving updated_at. No deletions, so that an incremental sync can be complete.
    sim = env.sim
    for name in ("properties", "reservations", "people", "supplies", "tags"):
        setattr(sim.rates, name, EntityRates(0, 0, 0))
    sim.rates.tasks = EntityRates(create=0.05, change=0.3)
    sim.rates.task_details = EntityRates(create=0.5, delete=0.2)
    before = {c: sim.truth(c, "task_comments") for c in env.regions.values()}
    sim.advance(hours=2)
    second = await run_batch(env.ctx, regions, HOURLY, trigger="test")
    assert _bad(second) == []
    assert await child_differences(env.pool, env.sim, env.regions, EMBEDDED_TABLES) == []
    assert await child_differences(env.pool, env.sim, env.regions, ("task_requirements",)) == []
    # Comments of unchanged tasks are not seen until the sweep.
    stale = await child_differences(env.pool, env.sim, env.regions, ("task_comments",))
    assert stale, "the clock added no comment to an unchanged task"
    assert any(set(sim.truth(c, "task_comments")) - set(before[c]) for c in env.regions.values())
    # Only the new and changed tasks were fetched (no sweep within the day).
    by_pair = {(r.region, r.entity): r.counts for r in second}
    for region in regions:
        tasks, details = by_pair[(region, "tasks")], by_pair[(region, "task_details")]
        assert details.records_processed == tasks.records_new + tasks.records_updated > 0
        assert details.records_new == tasks.records_new

    sweep = await run_batch(env.ctx, regions, ["task_details"], mode="full", trigger="test")
    assert _bad(sweep) == []
    assert await differences(env.pool, env.sim, env.regions) == []
    assert await child_differences(env.pool, env.sim, env.regions) == []
    assert await duplicate_keys(env.pool) == {}
    # The sweep fetched open tasks only: old finished ones were fetched once.
    finished_long_ago = await env.pool.fetchval(
        "SELECT count(*) FROM breezeway.tasks WHERE finished_at < now() - interval '7 days'"
    )
    swept = sum(r.counts.records_processed for r in sweep)
    total = await env.pool.fetchval("SELECT count(*) FROM breezeway.tasks")
    assert finished_long_ago > 0 and swept <= total - finished_long_ago
