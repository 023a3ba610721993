"""Section 4 faults, in-process: 5xx, 429 bursts, failing task listings, bad records,
records moving while a client pages; the control endpoints; the stats."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from breezeway_sim import BAD_RECORD_KINDS, Faults
from breezeway_sim.stats import max_in_window


def retry_after_of(answer) -> datetime:
    return datetime.fromisoformat(answer.json()["details"]["retry_after"]).replace(tzinfo=UTC)


async def test_error_rate_one_fails_every_data_request_but_not_auth(api, sim):
    sim.faults.error_rate = 1.0
    headers = await api.headers()
    codes = {(await api.get("/property", headers)).status_code for _ in range(30)}
    assert codes <= {500, 502, 503, 504} and len(codes) > 1
    assert sim.stats["sim-client-1"].server_errors == 30


async def test_error_rate_is_a_share(api, sim):
    sim.faults.error_rate = 0.3
    headers = await api.headers()
    codes = Counter([(await api.get("/supplies", headers)).status_code for _ in range(200)])
    assert 30 <= 200 - codes[200] <= 90


async def test_burst_of_n_429s_then_normal(api, sim):
    headers = await api.headers()
    sim.faults.burst_429(2, retry_after_s=30, company_id=1001)
    other = await api.headers(1)
    assert (await api.get("/property", other)).status_code == 200  # another credential
    for _ in range(2):
        answer = await api.get("/property", headers)
        assert answer.status_code == 429
        assert "retry-after" not in answer.headers
        assert answer.json()["details"]["message"] == "Rate limit exceeded"
        assert 25 <= (retry_after_of(answer) - datetime.now(UTC)).total_seconds() <= 32
    assert (await api.get("/property", headers)).status_code == 200
    assert sim.stats["sim-client-1"].rate_limited == 2


async def test_timed_burst_answers_429_until_its_end(api, sim):
    headers = await api.headers()
    sim.faults.burst_429(seconds=0.3)
    start = time.monotonic()
    first = await api.get("/property", headers)
    assert first.status_code == 429
    assert (retry_after_of(first) - datetime.now(UTC)).total_seconds() <= 1.3
    while time.monotonic() - start < 0.3:
        assert (await api.get("/property", headers)).status_code == 429
        await asyncio.sleep(0.05)  # the burst ends by the clock, there is no event to await
    assert (await api.get("/property", headers)).status_code == 200


def test_burst_needs_count_or_seconds():
    with pytest.raises(ValueError):
        Faults().burst_429()
    with pytest.raises(ValueError):
        Faults().burst_429(3, seconds=1)


async def test_data_rate_limit_in_process(api, sim):
    sim.faults.data_rate_limit_per_minute = 5
    headers = await api.headers()
    other = await api.headers(1)
    for _ in range(5):
        assert (await api.get("/people", headers)).status_code == 200
    refused = await api.get("/people", headers)
    assert refused.status_code == 429
    assert "retry-after" not in refused.headers
    wait = (retry_after_of(refused) - datetime.now(UTC)).total_seconds()
    assert 55 <= wait <= 61
    assert (await api.get("/people", other)).status_code == 200  # limits are per credential
    stats = sim.stats["sim-client-1"]
    assert (stats.data_requests, stats.rate_limited) == (6, 1)
    assert sim.stats.max_requests_in_window("sim-client-1") == 6
    sim.faults.data_rate_limit_per_minute = None
    assert (await api.get("/people", headers)).status_code == 200


async def test_fail_property_tasks(api, sim):
    headers = await api.headers()
    homes = sorted(sim.truth(1001, "properties"))
    sim.faults.fail_property_tasks = {homes[0]}
    assert (await api.get("/task/", headers, home_id=homes[0])).status_code == 500
    assert (await api.get("/task/", headers, home_id=homes[1])).status_code == 200


# bad records


async def test_each_bad_record_kind(api, sim):
    headers = await api.headers()
    victim = sim.bad_records_property(1001)
    clean = {
        "properties": await api.get_all("/property", headers),
        "reservations": await api.get_all("/reservation", headers, checkout_date_ge="2000-01-01"),
        "tasks": await api.get_all("/task/", headers, home_id=victim),
    }
    sim.faults.bad_records = set(BAD_RECORD_KINDS)
    paths = {
        "properties": ("/property", {}),
        "reservations": ("/reservation", {"checkout_date_ge": "2000-01-01"}),
        "tasks": ("/task/", {"home_id": victim}),
    }
    for entity, (path, params) in paths.items():
        answer = await api.get(path, headers, **params, limit=100)
        raw = answer.content
        results = orjson.loads(raw)["results"]
        assert b"\\u0000" in raw, entity
        ids = [r.get("id") for r in results]
        assert None in ids, entity  # no_id
        assert len([i for i in ids if i is not None]) > len(set(ids) - {None}), entity  # duplicate
        assert any(len(orjson.dumps(r)) > 1_000_000 for r in results), entity  # huge strings
        assert any(set(r) <= {"id", "home_id", "property_id", "company_id"} for r in results), (
            entity
        )
        injected = sim.bad_records(1001, entity)
        expected_kinds = len(BAD_RECORD_KINDS) - 1 - (entity != "reservations")
        assert len(injected) == expected_kinds, entity
        assert len(results) == len(clean[entity]) + 1 + expected_kinds, entity
        truth = sim.truth(1001, entity)
        if entity == "tasks":
            truth = {k: v for k, v in truth.items() if v["home_id"] == victim}
        assert set(truth) == {r["id"] for r in clean[entity]}  # truth never has them
    reservations = orjson.loads(
        (await api.get("/reservation", headers, checkout_date_ge="2000-01-01")).content
    )["results"]
    properties = set(sim.truth(1001, "properties"))
    assert any(r.get("property_id") not in properties for r in reservations)  # unknown_property
    wrong = [r for r in sim.bad_records(1001, "tasks") if r.get("total_cost") == "n/a"]
    assert wrong and isinstance(wrong[0]["scheduled_date"], int)
    people = (await api.get("/people", headers)).json()
    assert any("\x00" in (p.get("first_name") or "") for p in people)


async def test_bad_records_only_where_asked(api, sim):
    headers = await api.headers()
    sim.faults.bad_records = {"nul"}
    other_home = max(sim.truth(1001, "properties"))
    assert b"\\u0000" not in (await api.get("/task/", headers, home_id=other_home)).content
    assert b"\\u0000" not in (await api.get("/task/tags", headers)).content
    assert b"\\u0000" in (await api.get("/supplies", headers)).content
    sim.faults.bad_records = set()
    assert b"\\u0000" not in (await api.get("/supplies", headers)).content


def test_unknown_bad_record_kind_is_refused():
    with pytest.raises(ValueError):
        Faults().update(bad_records=["nul", "gremlins"])
    with pytest.raises(ValueError):
        Faults().update(no_such_fault=1)


# paging is not a snapshot


async def test_shift_while_paging_inserts_and_changes_records(api, sim):
    sim.faults.page_limit_cap = 2
    headers = await api.headers()
    start = set(sim.truth(1001, "reservations"))
    sim.faults.shift_while_paging = 1
    first = (
        await api.get(
            "/reservation", headers, checkout_date_ge="2000-01-01", sort_order="asc", page=1
        )
    ).json()
    second = (
        await api.get(
            "/reservation", headers, checkout_date_ge="2000-01-01", sort_order="asc", page=2
        )
    ).json()
    assert second["total_results"] == first["total_results"] + 1
    assert len(set(sim.truth(1001, "reservations")) - start) == 1
    home = min(sim.truth(1001, "properties"))
    before = set(sim.truth(1001, "tasks"))
    await api.get("/task/", headers, home_id=home, page=2)
    added = set(sim.truth(1001, "tasks")) - before
    assert added and all(sim.truth(1001, "tasks")[t]["home_id"] == home for t in added)


async def test_desc_paging_with_inserts_shows_a_record_twice(api, sim):
    sim.faults.page_limit_cap = 3
    sim.faults.shift_while_paging = 1
    headers = await api.headers()
    seen = []
    for page in (1, 2):
        body = (await api.get("/supplies", headers, page=page)).json()  # default: created_at desc
        seen += [r["id"] for r in body["results"]]
    assert len(seen) > len(set(seen))


async def test_delete_while_paging_can_skip_records(api, sim):
    sim.faults.page_limit_cap = 2
    sim.faults.delete_while_paging = 2
    headers = await api.headers()
    before = set(sim.truth(1001, "supplies"))
    listed = await api.get_all("/supplies", headers)
    assert len(sim.truth(1001, "supplies")) < len(before)
    assert len({r["id"] for r in listed}) < len(before)


# control endpoints


async def test_control_endpoints_are_off_by_default(api):
    for path in ("/_sim/faults", "/_sim/stats", "/_sim/companies"):
        assert (await api.client.get(path)).status_code == 404


async def test_control_endpoints(control_api, sim):
    c = control_api.client
    assert (
        await c.post(
            "/_sim/faults",
            json={"latency_s": 0.0, "data_rate_limit_per_minute": 3, "bad_records": ["nul"]},
        )
    ).status_code == 200
    assert sim.faults.data_rate_limit_per_minute == 3 and sim.faults.bad_records == {"nul"}
    assert (await c.post("/_sim/faults", json={"bad_records": ["gremlins"]})).status_code == 422
    assert (await c.get("/_sim/faults")).json()["bad_records"] == ["nul"]
    companies = (await c.get("/_sim/companies")).json()
    assert companies[0]["client_secret"] == "sim-secret-1-not-real"
    headers = await control_api.headers()
    assert (await control_api.get("/people", headers)).status_code == 200
    assert (await c.post("/_sim/revoke", json={"company_id": 1001})).status_code == 200
    assert (await control_api.get("/people", headers)).status_code == 401
    assert (await c.post("/_sim/disable", json={"company_id": 1002})).status_code == 200
    assert 1002 in sim.disabled
    stats = (await c.get("/_sim/stats")).json()
    assert stats["clients"]["sim-client-1"]["data_requests"] == 2
    assert (await c.post("/_sim/faults/burst_429", json={"count": 1})).status_code == 200
    assert sim.faults.bursts
    assert (await c.post("/_sim/rates", json={"tasks": {"change": 0.9}})).json()["tasks"][
        "change"
    ] == 0.9
    before = (await c.get("/_sim/now")).json()["now"]
    advanced = (await c.post("/_sim/advance", json={"hours": 3})).json()
    assert datetime.fromisoformat(advanced["now"]) - datetime.fromisoformat(before) >= timedelta(
        hours=3
    )
    assert advanced["events"]["1001"]["tasks"]["changed"] > 0
    truth = (await c.get("/_sim/truth/1001/tags")).json()
    assert len(truth) == 18 and all(":" in k for k in truth)
    tasks = (await c.get("/_sim/truth/1001/tasks")).json()
    assert set(map(int, tasks)) == set(sim.truth(1001, "tasks"))
    assert (await c.get("/_sim/bad_records/1001/supplies")).json()[0]["id"]
    assert (await c.post("/_sim/stats/reset")).status_code == 200
    assert sim.stats.clients == {}


# stats


def test_max_in_window():
    assert max_in_window([], 60) == 0
    assert max_in_window([0, 1, 2, 59.9, 60, 61], 60) == 4
    assert max_in_window([0, 100, 200], 60) == 1


async def test_stats_count_data_requests_per_client_and_path(api, sim):
    headers = await api.headers()
    await api.get("/people", headers)
    await api.get("/people", headers)
    await api.get("/supplies", headers)
    await api.get("/supplies", {})
    stats = sim.stats["sim-client-1"]
    assert stats.data_requests == 3
    assert stats.paths == Counter(
        {"/public/inventory/v1/people": 2, "/public/inventory/v1/supplies": 1}
    )
    assert sim.stats.unauthorized_anonymous == 1
    assert sim.stats.max_requests_in_window("sim-client-1", 60) == 3
    assert sim.stats.max_requests_in_window("sim-client-2", 60) == 0
