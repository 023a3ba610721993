"""Applying events: through the loader, never blindly, coalesced, after a restart."""

from __future__ import annotations

import copy

from breezeway_daemon.db.loader import Loader
from breezeway_daemon.entities import TASKS
from breezeway_daemon.webhooks.store import EventStore
from breezeway_daemon.webhooks.worker import EventWorker

from support.groundtruth import differences
from support.webhooks import Hooks, served_app


def later(stamp: str, seconds: int = 60) -> str:
    from datetime import datetime, timedelta

    moment = datetime.fromisoformat(stamp) + timedelta(seconds=seconds)
    return moment.isoformat()


async def stored_task(hooks: Hooks, task_id: int):
    return await hooks.pool.fetchrow(
        "SELECT name, updated_at, raw, deleted_at, synced_at FROM breezeway.tasks "
        "WHERE region_code = 'region_1' AND id = $1",
        task_id,
    )


def a_task(hooks: Hooks) -> dict:
    truth = hooks.sim.truth(hooks.sim.companies[0].company_id, "tasks")
    return copy.deepcopy(truth[min(truth)])


async def test_simulator_deliveries_make_the_database_equal_the_truth(hooks: Hooks) -> None:
    sim = hooks.sim
    sim.rates.update({"properties": {"create": 0, "delete": 0}, "reservations": {"create": 0}})
    sim.rates.update({"tasks": {"change": 0.3, "create": 0.05, "delete": 0.05}})
    async with served_app(hooks.app) as base:
        for company in sim.companies:
            url = f"{base}/webhooks/{hooks.settings.webhook_secret.get_secret_value()}/task"
            await sim.webhooks.subscribe(company, "task", url)
        sim.advance(1)
        await sim.webhooks.drain()
    assert all(e.outcome == "delivered" for e in sim.webhooks.log)
    await hooks.apply_all()
    outcomes = {o for _, o, _ in await hooks.outcomes()}
    assert {"applied", "deleted"} <= outcomes
    assert await differences(hooks.pool, sim, hooks.regions, ("tasks",)) == []


async def test_a_task_event_is_applied_through_the_loader(hooks: Hooks) -> None:
    task = a_task(hooks)
    task["name"] = "Changed by a webhook"
    task["updated_at"] = later(task["updated_at"])
    before = await stored_task(hooks, task["id"])
    assert (await hooks.post("task", hooks.task_event(task))).status_code == 200
    await hooks.apply_all()
    row = await stored_task(hooks, task["id"])
    assert row["name"] == "Changed by a webhook"  # the typed column
    assert row["raw"]["name"] == "Changed by a webhook"
    assert row["synced_at"] > before["synced_at"]
    assert await hooks.outcomes() == [(task["id"], "applied", None)]


async def test_an_event_not_newer_than_the_row_changes_nothing(hooks: Hooks) -> None:
    task = a_task(hooks)
    task["name"] = "An old state"
    task["updated_at"] = later(task["updated_at"], -3600)
    before = await stored_task(hooks, task["id"])
    await hooks.post("task", hooks.task_event(task))
    await hooks.apply_all()
    assert await stored_task(hooks, task["id"]) == before
    assert await hooks.outcomes() == [(task["id"], "unchanged", "not newer than the stored row")]


async def test_several_events_of_a_task_are_coalesced_into_the_newest(hooks: Hooks) -> None:
    task = a_task(hooks)
    versions = []
    for n in (3, 1, 2):  # delivered out of order
        version = dict(task, name=f"version {n}", updated_at=later(task["updated_at"], 60 * n))
        versions.append(version)
        await hooks.post("task", hooks.task_event(version))
    await hooks.apply_all()
    assert (await stored_task(hooks, task["id"]))["name"] == "version 3"
    assert sorted(o for _, o, _ in await hooks.outcomes()) == ["applied", "coalesced", "coalesced"]


async def test_an_invalid_payload_is_rejected_with_a_reason(hooks: Hooks) -> None:
    task = a_task(hooks)
    task["scheduled_date"] = "not a date"
    task["updated_at"] = later(task["updated_at"])
    before = await stored_task(hooks, task["id"])
    await hooks.post("task", hooks.task_event(task))
    await hooks.apply_all()
    assert await stored_task(hooks, task["id"]) == before
    [(_, outcome, reason)] = await hooks.outcomes()
    assert outcome == "rejected" and "scheduled_date" in reason


async def test_task_deleted_is_confirmed_with_the_api(hooks: Hooks) -> None:
    sim = hooks.sim
    data = sim.data(sim.companies[0].company_id)
    task = a_task(hooks)
    await hooks.post("task", hooks.task_event(task, "task-deleted", task=None))
    await hooks.apply_all()
    row = await stored_task(hooks, task["id"])
    assert row["deleted_at"] is None  # still there: not deleted
    assert (await hooks.outcomes())[0][1] == "kept"
    data.remove_task(task["id"])
    await hooks.post("task", hooks.task_event(task, "task-deleted", task=None))
    await hooks.apply_all()
    assert (await stored_task(hooks, task["id"]))["deleted_at"] is not None
    assert (await hooks.outcomes())[1][1:] == ("deleted", "GET /task/{id} answered 404")


async def test_a_property_status_event_refreshes_the_property(hooks: Hooks) -> None:
    sim = hooks.sim
    data = sim.data(sim.companies[0].company_id)
    pid = min(data.properties)
    data.properties[pid].data["status"] = "inactive"
    data.properties[pid].blob = None
    data.changed()
    body = {"event": "property-status-updated", "property_id": pid, "status": "inactive"}
    assert (await hooks.post("property-status", body)).status_code == 200  # no company_id
    await hooks.apply_all()
    status = await hooks.pool.fetchval(
        "SELECT status FROM breezeway.properties WHERE region_code = 'region_1' AND id = $1", pid
    )
    assert status == "inactive"
    assert await hooks.outcomes() == [(pid, "applied", None)]


async def test_events_acknowledged_before_a_restart_are_applied_after_it(hooks: Hooks) -> None:
    task = a_task(hooks)
    task["name"] = "Acknowledged, then the process died"
    task["updated_at"] = later(task["updated_at"])
    assert (await hooks.post("task", hooks.task_event(task))).status_code == 200
    # A new worker, as a restarted daemon starts it, finds the pending event.
    store = EventStore(hooks.pool, 3)
    fresh = EventWorker(hooks.pool, hooks.ctx.api, store, strict=False)
    assert await fresh.apply_pending() == 1
    assert (await stored_task(hooks, task["id"]))["name"] == task["name"]


async def test_a_poll_never_replaces_a_newer_row_with_an_older_one(hooks: Hooks) -> None:
    task = a_task(hooks)
    newer = dict(task, name="newer, from a webhook", updated_at=later(task["updated_at"]))
    await hooks.post("task", hooks.task_event(newer))
    await hooks.apply_all()
    # A poll that fetched the task before the change commits after the worker:
    older = dict(task, name="older, from a slow poll")
    loaded = await Loader(hooks.pool, TASKS, "region_1").load([older])
    assert loaded.records_updated == 0
    assert (await stored_task(hooks, task["id"]))["name"] == "newer, from a webhook"


async def test_strict_mode_rereads_every_task_event(strict_hooks: Hooks) -> None:
    hooks = strict_hooks
    task = a_task(hooks)
    forged = dict(task, name="forged with the right URL", updated_at=later(task["updated_at"]))
    calls_before = sum(s.data_requests for s in hooks.sim.stats.clients.values())
    await hooks.post("task", hooks.task_event(forged))
    await hooks.apply_all()
    row = await stored_task(hooks, task["id"])
    assert row["name"] == task["name"]  # the API's state, not the payload's
    assert sum(s.data_requests for s in hooks.sim.stats.clients.values()) == calls_before + 1


async def test_an_api_failure_marks_the_event_failed_and_changes_nothing(hooks: Hooks) -> None:
    task = a_task(hooks)
    before = await stored_task(hooks, task["id"])
    hooks.sim.faults.error_rate = 1.0  # every data request answers 5xx
    await hooks.post("task", hooks.task_event(task, "task-deleted", task=None))
    await hooks.apply_all()
    assert await stored_task(hooks, task["id"]) == before
    [(_, outcome, reason)] = await hooks.outcomes()
    assert outcome == "failed" and reason.startswith("the API failed")
