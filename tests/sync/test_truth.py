"""Runs over all regions and entities bring the database to the simulator's ground truth."""

from __future__ import annotations

from datetime import timedelta

from breezeway_daemon.db.runs import HOST, PID
from breezeway_daemon.sync import RunResult, run_batch
from breezeway_sim import EntityRates, Rates

from support.groundtruth import LISTED, differences, stored
from support.runs import cursor, log_rows
from support.syncenv import SyncEnv as Env


def _bad(results: list[RunResult]) -> list[tuple[str, str, str, str | None]]:
    return [(r.region, r.entity, r.status, r.error) for r in results if r.status != "success"]


async def test_run_all_equals_the_truth_and_a_second_run_changes_nothing(env: Env) -> None:
    regions = list(env.regions)
    first = await run_batch(env.ctx, regions, LISTED, trigger="test")
    assert _bad(first) == []
    assert len(first) == len(regions) * len(LISTED)
    assert await differences(env.pool, env.sim, env.regions) == []
    assert sum(r.counts.records_new for r in first) > 0

    second = await run_batch(env.ctx, regions, LISTED, trigger="test")
    assert _bad(second) == []
    changed = [(r.region, r.entity, r.counts) for r in second
               if r.counts.records_new or r.counts.records_updated or r.counts.records_deleted]  # fmt: skip
    assert changed == []
    assert await differences(env.pool, env.sim, env.regions) == []

    # Every run left its own row (history, not overwritten), with its counts and owner.
    for result in first + second:
        rows = await log_rows(env.pool, result.region, result.entity)
        assert len(rows) == 2
        row = next(r for r in rows if r["id"] == result.run_id)
        assert row["sync_status"] == "success"
        assert row["trigger"] == "test"
        assert (row["owner_host"], row["owner_pid"]) == (HOST, PID)
        assert row["sync_completed_at"] >= row["sync_started_at"]
        assert row["last_successful_sync_at"] == row["sync_completed_at"]
        assert row["records_processed"] == result.counts.records_processed > 0
        assert row["records_new"] == result.counts.records_new
        assert row["records_updated"] == result.counts.records_updated
        assert row["records_deleted"] == result.counts.records_deleted
        assert row["records_rejected"] == result.counts.records_rejected
        assert row["api_calls_made"] == result.counts.api_calls_made > 0
    # Incremental entities have a cursor: the last run's start minus the overlap.
    overlap = timedelta(minutes=env.settings.cursor_overlap_minutes)
    for region in regions:
        assert await cursor(env.pool, region, "people") is None
        for entity in ("reservations", "tasks"):
            start = (await log_rows(env.pool, region, entity))[-1]["sync_started_at"]
            assert await cursor(env.pool, region, entity) == start - overlap


async def test_counts_in_the_log_match_what_changed(env: Env) -> None:
    """new/updated/deleted/processed/api_calls of a full run after the clock moved on."""
    region, company = "region_1", env.company("region_1")
    client = env.sim.companies[0].client_id
    first = await run_batch(env.ctx, [region], LISTED)
    assert _bad(first) == []
    before = {e: env.sim.truth(company, e) for e in LISTED}

    env.sim.rates = Rates(**{e: EntityRates(0.3, 0.3, 0.2) for e in LISTED})
    env.sim.advance(hours=1)
    env.sim.faults.bad_records = {"no_id"}  # one rejected record per listing that carries them
    requests_before = env.sim.stats.client(client).data_requests
    results = await run_batch(env.ctx, [region], LISTED, mode="full")
    assert _bad(results) == []
    assert sum(r.counts.api_calls_made for r in results) == (
        env.sim.stats.client(client).data_requests - requests_before
    )

    for result in results:
        entity = result.entity
        after = env.sim.truth(company, entity)
        new = set(after) - set(before[entity])
        gone = set(before[entity]) - set(after)
        changed = {k for k in set(after) & set(before[entity]) if after[k] != before[entity][k]}
        bad = 0 if entity == "tags" else len(env.sim.bad_records(company, entity))
        row = (await log_rows(env.pool, region, entity))[-1]
        got = {
            k: row[f"records_{k}"] for k in ("new", "updated", "deleted", "rejected", "processed")
        }
        expected = {"new": len(new), "updated": len(changed), "deleted": len(gone),
                    "rejected": bad, "processed": len(after) + bad}  # fmt: skip
        assert got == expected, entity
        assert row["api_calls_made"] == result.counts.api_calls_made
    assert await differences(env.pool, env.sim, {region: company}) == []


async def test_an_incremental_run_makes_far_fewer_calls_than_a_full_one(paged_env: Env) -> None:
    env = paged_env
    regions = list(env.regions)
    first = await run_batch(env.ctx, regions, LISTED)
    assert _bad(first) == []
    full = await run_batch(env.ctx, regions, LISTED, mode="full")
    assert _bad(full) == []
    env.sim.advance(hours=1)
    incremental = await run_batch(env.ctx, regions, LISTED)
    assert _bad(incremental) == []
    assert await differences(env.pool, env.sim, env.regions, ("properties", "people")) == []

    def calls(results: list[RunResult], entity: str) -> int:
        return sum(r.counts.api_calls_made for r in results if r.entity == entity)

    for entity in ("reservations", "tasks"):
        assert calls(incremental, entity) * 3 <= calls(first, entity), entity
        assert calls(incremental, entity) * 3 <= calls(full, entity), entity
    total_full = sum(r.counts.api_calls_made for r in full)
    total_incremental = sum(r.counts.api_calls_made for r in incremental)
    assert total_incremental * 2 <= total_full


async def test_after_the_clock_moves_incremental_catches_up_and_full_finds_deletions(
    env: Env,
) -> None:
    regions = list(env.regions)
    assert _bad(await run_batch(env.ctx, regions, LISTED)) == []
    before = {(r, e): env.sim.truth(c, e) for r, c in env.regions.items() for e in LISTED}
    env.sim.rates = Rates(**{e: EntityRates(0.2, 0.3, 0.1) for e in LISTED})
    done = env.sim.advance(hours=2)
    assert all(sum(kind.values()) for per in done.values() for kind in per.values())

    incremental = await run_batch(env.ctx, regions, LISTED)
    assert _bad(incremental) == []
    # Creations and changes are all there; only deletions of incremental entities remain.
    for (region, entity), old in before.items():
        truth = env.sim.truth(env.regions[region], entity)
        db = await stored(env.pool, region, entity)
        assert {k for k in truth if db.get(k) != truth[k]} == set(), (region, entity)
        extra = set(db) - set(truth)
        if entity in ("reservations", "tasks"):
            assert extra <= set(old), (region, entity)
        else:
            assert extra == set(), (region, entity)
    for entity in ("reservations", "tasks"):
        lingering = [set(await stored(env.pool, r, entity)) - set(env.sim.truth(c, entity))
                     for r, c in env.regions.items()]  # fmt: skip
        assert any(lingering), f"no {entity} deleted: the test would prove nothing"

    full = await run_batch(env.ctx, regions, LISTED, mode="full")
    assert _bad(full) == []
    assert await differences(env.pool, env.sim, env.regions) == []
    for entity in ("reservations", "tasks"):
        assert sum(r.counts.records_deleted for r in full if r.entity == entity) > 0
