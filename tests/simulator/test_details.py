"""Task details in the simulator: comments and requirements, how they change over time, their
ground truth, and the bad child data of the ``bad_records`` fault."""

from __future__ import annotations

from breezeway_sim import BAD_CHILD_KINDS, EntityRates
from breezeway_sim.evolve import change_records


def quiet(sim) -> None:
    """No entity changes at all; tests then turn on the one they watch."""
    for name in ("properties", "reservations", "tasks", "people", "supplies", "tags"):
        setattr(sim.rates, name, EntityRates(0, 0, 0))
    sim.rates.task_details = EntityRates(0, 0, 0)


async def test_both_endpoints_answer_the_truth(api, sim):
    headers = await api.headers()
    comments = sim.truth(1001, "task_comments")
    requirements = sim.truth(1001, "task_requirements")
    assert comments and requirements
    for task_id in list(sim.truth(1001, "tasks"))[:12]:
        answer = await api.get(f"/task/{task_id}/comments", headers)
        assert answer.status_code == 200
        assert answer.json() == [
            {k: v for k, v in c.items() if k != "task_id"}
            for c in comments.values()
            if c["task_id"] == task_id
        ]
        answer = await api.get(f"/task/{task_id}/requirements/", headers)
        assert answer.status_code == 200
        expected = [item for (tid, _), item in sorted(requirements.items()) if tid == task_id]
        assert answer.json() == expected and len(expected) >= 3
        assert all(set(item) >= {"section_name", "action", "response"} for item in expected)


async def test_comments_arrive_on_open_tasks_without_moving_updated_at(api, sim):
    quiet(sim)
    sim.rates.task_details = EntityRates(create=0.5)
    tasks_before = sim.truth(1001, "tasks")
    before = sim.truth(1001, "task_comments")
    done = sim.advance(hours=2)
    after = sim.truth(1001, "task_comments")
    added = set(after) - set(before)
    assert added and done[1001]["task_details"]["created"] == len(added)
    assert sim.truth(1001, "tasks") == tasks_before  # no task changed at all
    open_ids = {t["id"] for t in tasks_before.values() if t["finished_at"] is None}
    assert {after[c]["task_id"] for c in added} <= set(tasks_before)
    assert any(after[c]["task_id"] in open_ids for c in added)
    headers = await api.headers()
    one = after[min(added)]
    served = (await api.get(f"/task/{one['task_id']}/comments", headers)).json()
    assert one["id"] in {c["id"] for c in served}


async def test_comments_are_removed_too(sim):
    quiet(sim)
    sim.rates.task_details = EntityRates(create=0.5, delete=0.5)
    sim.advance(hours=2)
    before = sim.truth(1001, "task_comments")
    sim.advance(hours=2)
    assert set(before) - set(sim.truth(1001, "task_comments"))


async def test_requirements_are_answered_as_the_task_progresses(api, sim):
    data = sim.data(1001)
    task = next(t for t in data.tasks.values() if t.status == 0)
    updated = sim.truth(1001, "tasks")[task.id]["updated_at"]
    headers = await api.headers()
    first = (await api.get(f"/task/{task.id}/requirements", headers)).json()
    assert first[0]["section_name"] == "Before you start"
    assert all(item["response"] is None for item in first)
    while task.status < 3:  # created -> assigned -> in progress -> finished
        change_records(data, "tasks", 1, sim.fault_rng, sim.now(), task.home_id)
    done = (await api.get(f"/task/{task.id}/requirements", headers)).json()
    assert len(done) == len(first) - 1  # the pre-start item left the list
    assert "Before you start" not in {item["section_name"] for item in done}
    assert sum(item["response"] is not None for item in done) >= len(done) - 2
    assert sim.truth(1001, "tasks")[task.id]["updated_at"] != updated


async def test_details_of_a_deleted_task_are_gone(api, sim):
    data = sim.data(1001)
    task_id = next(tid for tid in data.comments)
    headers = await api.headers()
    assert (await api.get(f"/task/{task_id}/comments", headers)).status_code == 200
    data.remove_task(task_id)
    for path in ("comments", "requirements"):
        answer = await api.get(f"/task/{task_id}/{path}", headers)
        assert answer.status_code == 404 and answer.json()["error"] == "Not Found"
    assert all(c["task_id"] != task_id for c in sim.truth(1001, "task_comments").values())
    assert all(tid != task_id for tid, _ in sim.truth(1001, "task_requirements"))


async def test_details_of_another_company_task_are_not_found(api, sim):
    other_task = min(sim.truth(1002, "tasks"))
    headers = await api.headers(0)
    assert (await api.get(f"/task/{other_task}/comments", headers)).status_code == 404


async def test_bad_child_data(api, sim):
    headers = await api.headers()
    victim = sim.bad_records_property(1001)
    sim.faults.bad_records = set(BAD_CHILD_KINDS)
    tasks = await api.get_all("/task/", headers, home_id=victim)
    injected = {r["id"]: r for r in sim.bad_records(1001, "tasks")}
    assert len(injected) == 3 and set(injected) <= {t["id"] for t in tasks}
    assert set(injected).isdisjoint(sim.truth(1001, "tasks"))
    assert any(any("id" not in a for a in t["assignments"]) for t in injected.values())
    assert any(any(isinstance(p, str) for p in t["photos"]) for t in injected.values())
    objects = []
    for task_id in injected:
        answer = await api.get(f"/task/{task_id}/requirements", headers)
        assert answer.status_code == 200
        if isinstance(answer.json(), dict):
            objects.append(task_id)
        assert (await api.get(f"/task/{task_id}/comments", headers)).json() == []
    assert len(objects) == 1
    properties = await api.get_all("/property", headers)
    assert any(any(isinstance(p, str) for p in r["photos"]) for r in properties)
    assert any(any("id" not in p for p in r["photos"]) for r in properties)
    stays = await api.get_all("/reservation", headers, checkout_date_ge="2000-01-01")
    assert any(any(isinstance(g, str) for g in r["guests"]) for r in stays)
    sim.faults.bad_records = set()
    assert (await api.get(f"/task/{objects[0]}/requirements", headers)).status_code == 404


async def test_control_truth_of_requirements(control_api, sim):
    answer = await control_api.client.get("/_sim/truth/1001/task_requirements")
    assert answer.status_code == 200
    task_id, position = next(iter(answer.json())).split(":")
    assert (int(task_id), int(position)) in sim.truth(1001, "task_requirements")
