"""The simulator's webhooks: subscriptions, the test event, deliveries and their faults."""

from __future__ import annotations

import pytest

WEBHOOK = "/public/webhook/v1"


async def subscribe(api, url: str, kind: str = "task", index: int = 0):
    headers = await api.headers(index)
    return await api.client.post(
        WEBHOOK + "/subscribe", json={"webhook_type": kind, "url": url}, headers=headers
    )


async def test_subscribe_sends_the_test_event_then_lists_and_removes(api, receiver):
    answer = await subscribe(api, receiver.url)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["message"] == "Subscription successful"
    assert (body["company_id"], body["url"], body["webhook_type"]) == (1001, receiver.url, "task")
    assert receiver.bodies == [{"event": "test_webhook_event"}]
    again = await subscribe(api, receiver.url)
    assert again.json()["id"] == body["id"]  # idempotent: the same subscription
    headers = await api.headers()
    listed = await api.client.get(WEBHOOK + "/subscriptions", headers=headers)
    assert [s["id"] for s in listed.json()] == [body["id"]]
    other = await api.client.get(WEBHOOK + "/subscriptions", headers=await api.headers(1))
    assert other.json() == []  # another company sees none of them
    gone = await api.client.delete(f"{WEBHOOK}/subscribe/{body['id']}", headers=headers)
    assert gone.status_code == 204
    assert (await api.client.get(WEBHOOK + "/subscriptions", headers=headers)).json() == []
    missing = await api.client.delete(f"{WEBHOOK}/subscribe/{body['id']}", headers=headers)
    assert missing.status_code == 404


async def test_subscribe_fails_when_the_test_event_fails(api, receiver):
    receiver.status = 503
    answer = await subscribe(api, receiver.url)
    assert answer.status_code == 400
    assert "test event" in answer.json()["description"]
    unreachable = await subscribe(api, "http://127.0.0.1:9/hook")
    assert unreachable.status_code == 400
    assert api.sim.webhooks.subscriptions == {}


async def test_subscribe_refuses_other_hosts_and_needs_a_token(api):
    answer = await subscribe(api, "http://example.com/hook")
    assert answer.status_code == 422
    anonymous = await api.client.post(
        WEBHOOK + "/subscribe", json={"webhook_type": "task", "url": "http://127.0.0.1:9/"}
    )
    assert anonymous.status_code == 401


async def test_task_changes_are_delivered_with_the_whole_task(api, receiver, sim):
    assert (await subscribe(api, receiver.url)).status_code == 200
    sim.rates.update({"tasks": {"change": 0.2, "create": 0.05, "delete": 0.05}})
    sim.advance(1)
    hub = sim.webhooks
    await hub.drain()
    events = receiver.bodies[1:]
    assert events, "the clock moved tasks on: events expected"
    names = {e["event"] for e in events}
    assert {"task-updated", "task-created", "task-deleted"} <= names
    truth = sim.truth(1001, "tasks")
    for event in events:
        assert event["company_id"] == 1001
        if event["event"] == "task-deleted":
            assert event["task"] is None and event["task_id"] not in truth
        else:
            assert event["task"] == truth[event["task_id"]]
            assert event["updated_at"] == event["task"]["updated_at"]
    assert len({e["task_id"] for e in events}) == len(events)  # one event per task changed
    assert all(e.outcome == "delivered" for e in hub.log)


async def test_property_status_events(api, receiver, sim):
    assert (await subscribe(api, receiver.url, "property-status")).status_code == 200
    sim.rates.update({"properties": {"change": 1.0}})
    sim.advance(1)
    await sim.webhooks.drain()
    events = receiver.bodies[1:]
    assert events
    truth = sim.truth(1001, "properties")
    for event in events:
        assert event["event"] == "property-status-updated"
        assert truth[event["property_id"]]["status"] == event["status"]


async def test_lost_duplicated_and_reordered_deliveries(api, receiver, sim):
    assert (await subscribe(api, receiver.url)).status_code == 200
    hub = sim.webhooks
    hub.max_in_flight = 1  # in order, so that a reorder shows
    hub.faults.update(lose_rate=0.2, duplicate_rate=0.2, reorder_rate=0.2)
    sim.rates.update({"tasks": {"change": 0.5}})
    sim.advance(1)
    await hub.drain()
    lost = [e for e in hub.log if e.outcome == "lost"]
    doubled = [e for e in hub.log if e.copies == 2]
    assert lost and doubled
    got = [b["task_id"] for b in receiver.bodies[1:]]
    assert not {e.entity_id for e in lost} & set(got)
    assert len(got) == len(hub.log) - len(lost) + len(doubled)
    in_change_order = [e.entity_id for e in hub.log if e.outcome != "lost"]
    arrived = [tid for n, tid in enumerate(got) if n == 0 or got[n - 1] != tid]
    assert sorted(arrived) == sorted(in_change_order)
    assert arrived != in_change_order  # some were held back and sent after the next


async def test_a_failing_endpoint_loses_its_subscription(api, receiver, sim):
    assert (await subscribe(api, receiver.url)).status_code == 200
    hub = sim.webhooks
    hub.drop_after_failures = 3
    receiver.status = 500
    sim.rates.update({"tasks": {"change": 0.5}})
    sim.advance(1)
    await hub.drain()
    assert hub.subscriptions == {}


async def test_delivery_faults_over_the_control_api(control_api):
    answer = await control_api.client.post("/_sim/webhooks/faults", json={"lose_rate": 0.5})
    assert answer.json()["lose_rate"] == 0.5
    bad = await control_api.client.post("/_sim/webhooks/faults", json={"lose_rate": 2})
    assert bad.status_code == 422
    assert (await control_api.client.get("/_sim/webhooks/log")).json() == []


@pytest.fixture(autouse=True)
async def _close_hub(sim):
    yield
    await sim.webhooks.aclose()
