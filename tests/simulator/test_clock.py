"""Section 4: time moving on (creates, changes, deletes), determinism, the ground truth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from breezeway_sim import EntityRates, Rates, Scale, Simulator


def ts(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def busy_rates(create: float = 0.2, change: float = 0.3, delete: float = 0.1) -> Rates:
    rates = Rates()
    for name in ("properties", "reservations", "tasks", "people", "supplies", "tags"):
        setattr(rates, name, EntityRates(create, change, delete))
    rates.properties = EntityRates(0, 0, 0)
    return rates


def test_now_is_aware_utc_starts_at_real_time_and_only_moves_forward():
    before = datetime.now(UTC)
    sim = Simulator(companies=1)
    first = sim.now()
    assert first.tzinfo is not None and first.utcoffset() == timedelta(0)
    assert before <= first <= datetime.now(UTC)
    sim.advance(hours=2)
    assert sim.now() - first >= timedelta(hours=2)
    with pytest.raises(ValueError):
        sim.advance(hours=-1)


def test_generated_history_ends_at_the_start():
    sim = Simulator(companies=1)
    start = sim.now()
    for entity in ("reservations", "tasks", "supplies"):
        for record in sim.truth(1001, entity).values():
            assert ts(record["created_at"]) <= ts(record["updated_at"]) <= start


def test_same_seed_same_data_other_seed_other_data():
    anchor = datetime.now(UTC) - timedelta(minutes=5)
    a = Simulator(companies=2, seed=7, anchor=anchor)
    b = Simulator(companies=2, seed=7, anchor=anchor)
    c = Simulator(companies=2, seed=8, anchor=anchor)
    for entity in ("properties", "reservations", "tasks", "people", "supplies", "tags"):
        assert a.truth(1002, entity) == b.truth(1002, entity), entity
    assert a.truth(1001, "properties") != c.truth(1001, "properties")
    assert a.truth(1001, "properties") != a.truth(1002, "properties")


def test_advance_creates_changes_and_deletes_with_updated_at_after_the_change():
    sim = Simulator(companies=1, rates=busy_rates(), seed=4)
    before = {e: sim.truth(1001, e) for e in ("reservations", "tasks", "supplies")}
    real_before = datetime.now(UTC)
    events = sim.advance(hours=1)[1001]
    assert events["tasks"]["created"] and events["tasks"]["changed"] and events["tasks"]["deleted"]
    for entity, old in before.items():
        new = sim.truth(1001, entity)
        created = set(new) - set(old)
        deleted = set(old) - set(new)
        changed = {k for k in set(new) & set(old) if new[k] != old[k]}
        assert created and deleted and changed, entity
        for key in created | changed:
            assert ts(new[key]["updated_at"]) >= real_before, (entity, key)
        for key in changed:
            assert ts(new[key]["updated_at"]) > ts(old[key]["updated_at"])


def test_advance_with_zero_rates_changes_nothing():
    rates = busy_rates(0, 0, 0)
    sim = Simulator(companies=1, rates=rates)
    old = sim.truth(1001, "tasks")
    sim.advance(hours=5)
    assert sim.truth(1001, "tasks") == old


async def test_incremental_reservation_sync_by_updated_at_sees_every_change(api_for):
    sim = Simulator(companies=1, rates=busy_rates(), seed=9)
    api = await api_for(sim)
    headers = await api.headers()
    old = sim.truth(1001, "reservations")
    cursor = sim.now() - timedelta(minutes=5)  # a run's start minus an overlap
    sim.advance(hours=1)
    new = sim.truth(1001, "reservations")
    listed = await api.get_all("/reservation", headers, updated_at_ge=cursor.isoformat())
    touched = {k for k in new if k not in old or new[k] != old[k]}
    assert touched
    assert touched <= {r["id"] for r in listed}
    assert all(ts(r["updated_at"]) >= cursor for r in listed)


async def test_incremental_task_sync_by_updated_at_range_per_property(api_for):
    sim = Simulator(
        companies=1, scale=Scale(properties=2, tasks_per_property=30), rates=busy_rates(), seed=10
    )
    api = await api_for(sim)
    headers = await api.headers()
    old = sim.truth(1001, "tasks")
    cursor_day = (sim.now() - timedelta(days=1)).date()
    sim.advance(hours=1)
    new = sim.truth(1001, "tasks")
    seen: set[int] = set()
    for home in sim.truth(1001, "properties"):
        listed = await api.get_all(
            "/task/", headers, home_id=home, updated_at=f"{cursor_day},{sim.now().date()}"
        )
        seen |= {t["id"] for t in listed}
    touched = {k for k in new if k not in old or new[k] != old[k]}
    assert touched and touched <= seen


async def an_hour_of_deletions(api_for, entity: str, seed: int):  # noqa: ANN201 - test shorthand
    """A simulator deleting half of ``entity`` an hour, an hour on: (sim, api, headers, old, gone)."""
    rates = busy_rates(0, 0, 0)
    setattr(rates, entity, EntityRates(0, 0, 0.5))
    sim = Simulator(companies=1, rates=rates, seed=seed)
    api = await api_for(sim)
    headers = await api.headers()
    old = sim.truth(1001, entity)
    sim.advance(hours=1)
    gone = set(old) - set(sim.truth(1001, entity))
    assert gone
    return sim, api, headers, old, gone


async def test_deleted_task_is_404_and_leaves_the_listing(api_for):
    _, api, headers, old, gone = await an_hour_of_deletions(api_for, "tasks", seed=11)
    tid = min(gone)
    assert (await api.get(f"/task/{tid}", headers)).status_code == 404
    listed = await api.get_all("/task/", headers, home_id=old[tid]["home_id"])
    assert tid not in {t["id"] for t in listed}


async def test_removed_property_takes_its_tasks_and_reservations(api_for):
    sim, api, headers, _, removed = await an_hour_of_deletions(api_for, "properties", seed=12)
    assert not [t for t in sim.truth(1001, "tasks").values() if t["home_id"] in removed]
    assert not [r for r in sim.truth(1001, "reservations").values() if r["property_id"] in removed]
    listed = await api.get_all("/property", headers)
    assert removed.isdisjoint(r["id"] for r in listed)
    gone_home = min(removed)
    assert (await api.get("/task/", headers, home_id=gone_home)).json()["results"] == []


def test_new_reservations_are_in_the_future_and_get_a_departure_clean():
    rates = busy_rates(0, 0, 0)
    rates.reservations = EntityRates(1.0, 0, 0)
    sim = Simulator(companies=1, rates=rates, seed=13)
    old = sim.truth(1001, "reservations")
    sim.advance(hours=1)
    new = sim.truth(1001, "reservations")
    created = set(new) - set(old)
    assert created
    linked = {
        t["linked_reservation"]["id"]
        for t in sim.truth(1001, "tasks").values()
        if t["linked_reservation"]
    }
    for rid in created:
        assert new[rid]["checkin_date"] > sim.now().date().isoformat()
        assert rid in linked


def test_truth_of_tags_is_keyed_by_kind_and_id_and_unknown_entity_fails():
    sim = Simulator(companies=1)
    tags = sim.truth(1001, "tags")
    assert {k[0] for k in tags} == {"task", "property", "reservation"}
    assert all(k[1] == v["id"] for k, v in tags.items())
    with pytest.raises(ValueError):
        sim.truth(1001, "invoices")


def test_truth_returns_copies():
    sim = Simulator(companies=1)
    first = sim.truth(1001, "properties")
    next(iter(first.values()))["name"] = "changed by a test"
    assert sim.truth(1001, "properties") != first
