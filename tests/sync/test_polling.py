"""The task polling plan: busy properties every hourly run, quiet ones every Nth, none lost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from breezeway_daemon.config import Settings
from breezeway_daemon.sync import RunResult, run_batch
from breezeway_daemon.sync.polling import plan_task_polls
from breezeway_sim import EntityRates, Rates, Scale, Simulator

from support.groundtruth import stored
from support.syncenv import SyncEnv, served

REGION = "region_1"
EVERY = 3
SCALE = Scale(properties=30, reservations_per_property=4, tasks_per_property=8, people=3,
              supplies=3, tags=2)  # fmt: skip


@pytest.fixture
async def env(clean_db: asyncpg.Pool, base_settings: Settings) -> AsyncIterator[SyncEnv]:
    sim = Simulator(companies=1, scale=SCALE, seed=41)
    async with served(base_settings, sim, task_quiet_poll_every=EVERY, http_max_attempts=2,
                      http_retry_budget_s=3) as found:  # fmt: skip
        yield found


def _tasks(results: list[RunResult]) -> RunResult:
    [result] = [r for r in results if r.entity == "tasks"]
    assert result.status == "success", result.error
    return result


async def _stale_properties(env: SyncEnv) -> set[int]:
    """Properties with a task the database does not hold as the truth has it (deletions
    aside: the daily full run finds those)."""
    truth = env.sim.truth(env.company(REGION), "tasks")
    db = await stored(env.pool, REGION, "tasks")
    return {task["home_id"] for tid, task in truth.items() if db.get(tid) != task}


async def test_quiet_properties_wait_their_slot_and_every_one_is_current_within_n_runs(
    env: SyncEnv,
) -> None:
    first = await run_batch(env.ctx, [REGION], ["properties", "reservations", "tasks"], mode="full")
    assert all(r.status == "success" for r in first)
    env.sim.rates = Rates(tasks=EntityRates(0.0, 0.5, 0.0))
    env.sim.advance(hours=1)
    changed = await _stale_properties(env)

    # The hourly batch: its parents first, then the plan the task run makes from them.
    await run_batch(env.ctx, [REGION], ["properties", "reservations"])
    plan = await plan_task_polls(env.pool, REGION, env.settings, datetime.now(UTC))
    assert plan is not None and plan.busy and plan.due and plan.skipped
    hourly = _tasks(await run_batch(env.ctx, [REGION], ["tasks"]))
    assert hourly.parents_skipped == len(plan.skipped)
    assert hourly.counts.api_calls_made == len(plan.busy) + len(plan.due)

    # Listed properties are current; the skipped ones that changed are not, yet.
    stale = await _stale_properties(env)
    assert stale.isdisjoint(plan.busy + plan.due)
    assert stale == changed & set(plan.skipped) != set(), "no skipped change: proves nothing"

    # Every property's slot comes within EVERY runs: then nothing is stale.
    for _ in range(EVERY - 1):
        _tasks(await run_batch(env.ctx, [REGION], ["tasks"]))
    assert await _stale_properties(env) == set()


async def test_a_failed_run_does_not_use_up_its_slot(env: SyncEnv) -> None:
    first = await run_batch(env.ctx, [REGION], ["properties", "reservations", "tasks"], mode="full")
    assert all(r.status == "success" for r in first)
    before = await plan_task_polls(env.pool, REGION, env.settings, datetime.now(UTC))
    env.sim.faults.update(error_rate=1.0)
    failed = [r for r in await run_batch(env.ctx, [REGION], ["tasks"]) if r.entity == "tasks"]
    assert failed[0].status == "failed"
    env.sim.faults.update(error_rate=0.0)
    after = await plan_task_polls(env.pool, REGION, env.settings, datetime.now(UTC))
    assert before is not None and after is not None
    assert (after.slot, after.due) == (before.slot, before.due)


async def test_every_property_every_run_when_n_is_one_or_before_a_full_run(env: SyncEnv) -> None:
    first = _tasks(await run_batch(env.ctx, [REGION], ["properties", "reservations", "tasks"]))
    assert first.parents_skipped == 0
    second = _tasks(await run_batch(env.ctx, [REGION], ["tasks"]))
    assert second.parents_skipped == 0  # no full run yet: no plan
    _tasks(await run_batch(env.ctx, [REGION], ["tasks"], mode="full"))
    assert _tasks(await run_batch(env.ctx, [REGION], ["tasks"])).parents_skipped > 0
    env.reconfigure(task_quiet_poll_every=1)
    off = _tasks(await run_batch(env.ctx, [REGION], ["tasks"]))
    assert off.parents_skipped == 0
    live = await env.pool.fetchval(
        "SELECT count(*) FROM breezeway.properties WHERE region_code = $1 AND deleted_at IS NULL",
        REGION,
    )
    assert off.counts.api_calls_made == live
