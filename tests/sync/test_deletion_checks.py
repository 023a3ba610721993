"""A full task run confirms missing tasks with GETs of them, several at once per credential."""

from __future__ import annotations

from typing import Any

import pytest

from breezeway_daemon.api.client import BreezewayClient
from breezeway_daemon.entities import EntitySpec
from breezeway_daemon.sync import run_batch
from breezeway_sim import EntityRates, Rates

from support.groundtruth import differences
from support.syncenv import SyncEnv as Env

ENTITIES = ["properties", "tasks"]


async def test_missing_tasks_are_checked_concurrently_and_marked_deleted(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    regions = list(env.regions)
    assert all(r.status == "success" for r in await run_batch(env.ctx, regions, ENTITIES))
    env.sim.rates = Rates(properties=EntityRates(), tasks=EntityRates(delete=0.3))
    env.sim.advance(hours=2)
    env.sim.faults.latency_s = 0.02  # long enough for checks sent together to overlap

    in_flight: dict[str, int] = dict.fromkeys(regions, 0)
    peak: dict[str, int] = dict.fromkeys(regions, 0)
    checked: list[int] = []
    original = BreezewayClient.record

    async def record(self: BreezewayClient, spec: EntitySpec, record_id: int) -> Any:
        in_flight[self.region] += 1
        peak[self.region] = max(peak[self.region], in_flight[self.region])
        checked.append(record_id)
        try:
            return await original(self, spec, record_id)
        finally:
            in_flight[self.region] -= 1

    monkeypatch.setattr(BreezewayClient, "record", record)
    full = await run_batch(env.ctx, regions, ENTITIES, mode="full")

    assert [(r.entity, r.status) for r in full if r.status != "success"] == []
    deleted = sum(r.counts.records_deleted for r in full if r.entity == "tasks")
    assert len(checked) >= 4, "too few deletions to see checks overlap"
    assert deleted == len(checked)  # every check answered 404: the task is gone
    assert all(1 < n <= env.settings.task_fetch_concurrency for n in peak.values()), peak
    assert await differences(env.pool, env.sim, env.regions, tuple(ENTITIES)) == []
