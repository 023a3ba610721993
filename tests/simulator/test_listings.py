"""Contract sections 2 (paging) and 3 (endpoints, filters, company scope), in-process."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import orjson
import pytest

from breezeway_sim import Scale, Simulator
from breezeway_sim.listings import FIELDS


def ts(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# paging


async def test_paging_envelope_and_page_past_the_end(api, sim):
    headers = await api.headers()
    answer = await api.get("/property", headers, limit=4, page=1)
    body = answer.json()
    assert answer.headers["content-type"] == "application/json"
    assert set(body) == {"limit", "page", "total_pages", "total_results", "results"}
    assert (body["limit"], body["page"], body["total_results"], body["total_pages"]) == (4, 1, 6, 2)
    assert len(body["results"]) == 4
    past = (await api.get("/property", headers, limit=4, page=3)).json()
    assert past["results"] == []
    assert (past["total_pages"], past["total_results"]) == (2, 6)


async def test_limit_is_capped_and_the_answer_says_so(api, sim):
    headers = await api.headers()
    body = (
        await api.get("/reservation", headers, limit=1000, checkout_date_ge="2000-01-01")
    ).json()
    assert body["limit"] == 100
    sim.faults.page_limit_cap = 5
    body = (await api.get("/reservation", headers, limit=50, checkout_date_ge="2000-01-01")).json()
    assert body["limit"] == 5
    assert len(body["results"]) == 5
    assert body["total_pages"] == -(-body["total_results"] // 5)


async def test_paging_through_a_listing_returns_every_record_once(api, sim):
    sim.faults.page_limit_cap = 7
    headers = await api.headers()
    records = await api.get_all("/task/", headers, home_id=min(sim.truth(1001, "properties")))
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == 8


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"page": 0}, "page"),
        ({"page": "x"}, "page"),
        ({"limit": 0}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"sort_order": "sideways"}, "sort_order"),
        ({"sort_by": "no_such_field"}, "sort_by"),
    ],
)
async def test_bad_paging_parameters_are_422(api, params, needle):
    answer = await api.get("/property", await api.headers(), **params)
    assert answer.status_code == 422
    assert needle in answer.json()["description"]


async def test_default_sort_is_created_at_descending(api, sim):
    headers = await api.headers()
    results = (await api.get("/supplies", headers)).json()["results"]
    created = [ts(r["created_at"]) for r in results]
    assert created == sorted(created, reverse=True)
    asc = (await api.get("/supplies", headers, sort_order="asc")).json()["results"]
    assert [r["id"] for r in asc] == [r["id"] for r in reversed(results)]


@pytest.mark.parametrize("sort_by", ["id", "name", "updated_at", "stock_count"])
async def test_sort_by_any_field(api, sort_by):
    headers = await api.headers()
    results = (await api.get("/supplies", headers, sort_by=sort_by, sort_order="asc")).json()[
        "results"
    ]
    key = (lambda r: ts(r[sort_by])) if sort_by.endswith("_at") else (lambda r: r[sort_by])
    values = [key(r) for r in results]
    assert values == sorted(values)


async def test_task_sort_by_scheduled_date_and_by_a_rendered_field(api, sim):
    headers = await api.headers()
    home = min(sim.truth(1001, "properties"))
    for sort_by in ("scheduled_date", "name", "finished_at"):
        results = (
            await api.get("/task/", headers, home_id=home, sort_by=sort_by, sort_order="asc")
        ).json()["results"]
        present = [r[sort_by] for r in results if r[sort_by] is not None]
        if sort_by == "finished_at":
            present = [ts(v) for v in present]
            assert all(r[sort_by] is None for r in results[len(present) :])  # nulls last
        assert present == sorted(present)


# companies, scope


async def test_companies_is_a_plain_array_of_the_credentials_company(api, sim):
    answer = await api.get("/companies", await api.headers(1))
    assert answer.json() == [
        {"id": 1002, "name": sim.companies[1].name, "reference_company_id": "SIM-1002"}
    ]


@pytest.mark.parametrize(
    "path", ["/property", "/reservation", "/people", "/supplies", "/task/tags"]
)
async def test_company_id_of_another_company_is_403(api, path):
    headers = await api.headers(0)
    assert (await api.get(path, headers, company_id=1001)).status_code == 200
    answer = await api.get(path, headers, company_id=1002)
    assert answer.status_code == 403
    assert set(answer.json()) == {"error", "description"}


async def test_a_credential_never_sees_another_companys_records(api, sim):
    headers = await api.headers(0)
    other_property = min(sim.truth(1002, "properties"))
    other_task = min(sim.truth(1002, "tasks"))
    listing = (await api.get("/task/", headers, home_id=other_property)).json()
    assert listing["results"] == [] and listing["total_results"] == 0
    assert (await api.get(f"/task/{other_task}", headers)).status_code == 404
    mine = await api.get_all("/property", headers)
    assert {r["id"] for r in mine} == set(sim.truth(1001, "properties"))
    assert {r["company_id"] for r in mine} == {1001}


# properties


async def test_properties_list_every_status_and_match_the_truth(api_for):
    sim = Simulator(
        companies=1,
        scale=Scale(properties=60, reservations_per_property=0, tasks_per_property=0),
        seed=3,
    )
    api = await api_for(sim)
    headers = await api.headers()
    records = await api.get_all("/property", headers)
    assert {r["id"]: r for r in records} == sim.truth(1001, "properties")
    statuses = {r["status"] for r in records}
    assert statuses <= {"active", "inactive", "pending_delete", "deleted"}
    assert {"active", "inactive"} <= statuses
    only = await api.get_all("/property", headers, status="inactive")
    assert only and {r["status"] for r in only} == {"inactive"}
    assert (await api.get("/property", headers, status="gone")).status_code == 422


async def test_property_record_shape(api, sim):
    record = (await api.get("/property", await api.headers())).json()["results"][0]
    expected = set(
        "id company_id name status address1 address2 building city state zipcode country latitude"
        " longitude display bedrooms bathrooms living_area year_built wifi_name wifi_password"
        " reference_company_id reference_external_property_id reference_property_id notes groups"
        " photos".split()
    )
    assert set(record) == expected
    assert set(record["notes"]) == {
        "about",
        "access",
        "general",
        "guest_access",
        "direction",
        "trash_info",
        "wifi",
    }
    for photo in record["photos"]:
        assert set(photo) == {"id", "url", "default", "caption", "original_url"}


# reservations


async def test_reservations_default_to_checkout_today_or_later(api, sim):
    headers = await api.headers()
    today = sim.now().date()
    listed = await api.get_all("/reservation", headers)
    truth = sim.truth(1001, "reservations")
    expected = {rid for rid, r in truth.items() if date.fromisoformat(r["checkout_date"]) >= today}
    assert {r["id"] for r in listed} == expected
    assert len(expected) < len(truth)  # some are in the past, so the default matters


async def test_a_365_day_backfill_sees_every_reservation(api, sim):
    headers = await api.headers()
    start = (sim.now() - timedelta(days=365)).date().isoformat()
    listed = await api.get_all("/reservation", headers, checkout_date_ge=start)
    assert {r["id"]: r for r in listed} == sim.truth(1001, "reservations")


@pytest.mark.parametrize("field", ["checkin_date", "checkout_date", "created_at", "updated_at"])
@pytest.mark.parametrize("op", ["lt", "le", "gt", "ge"])
async def test_reservation_date_filters(api, sim, field, op):
    headers = await api.headers()
    truth = sim.truth(1001, "reservations")
    values = sorted(r[field][:10] for r in truth.values())
    pivot = values[len(values) // 2]  # a date some records have
    listed = await api.get_all("/reservation", headers, **{f"{field}_{op}": pivot})
    compare = {"lt": "__lt__", "le": "__le__", "gt": "__gt__", "ge": "__ge__"}[op]
    expected = {
        rid
        for rid, r in truth.items()
        if getattr(date.fromisoformat(r[field][:10]), compare)(date.fromisoformat(pivot))
    }
    assert {r["id"] for r in listed} == expected
    assert expected and len(expected) < len(truth)


async def test_reservation_filters_accept_datetimes_with_or_without_zone(api, sim):
    headers = await api.headers()
    truth = sim.truth(1001, "reservations")
    cut = sorted(ts(r["updated_at"]) for r in truth.values())[len(truth) // 2]
    expected = {rid for rid, r in truth.items() if ts(r["updated_at"]) >= cut}
    for text in (
        cut.isoformat(),
        cut.replace(tzinfo=None).isoformat(),
        cut.isoformat().replace("+00:00", "Z"),
    ):
        listed = await api.get_all("/reservation", headers, updated_at_ge=text)
        assert {r["id"] for r in listed} == expected, text


async def test_reservation_bad_date_is_422_and_property_filter_works(api, sim):
    headers = await api.headers()
    assert (await api.get("/reservation", headers, updated_at_ge="yesterday")).status_code == 422
    truth = sim.truth(1001, "reservations")
    pid = next(iter(truth.values()))["property_id"]
    listed = await api.get_all(
        "/reservation", headers, property_id=pid, checkout_date_ge="2000-01-01"
    )
    assert {r["id"] for r in listed} == {rid for rid, r in truth.items() if r["property_id"] == pid}


async def test_reservation_record_shape(api, sim):
    record = next(iter(sim.truth(1001, "reservations").values()))
    expected = set(
        "id property_id status checkin_date checkin_time checkin_early checkout_date checkout_time"
        " checkout_late access_code guide_url note adults children pets source guests tags flags"
        " type_guest type_stay type_reservation reference_external_property_id"
        " reference_property_id reference_reservation_id created_at updated_at".split()
    )
    assert set(record) == expected
    assert record["status"] in ("active", "cancelled")
    assert re.fullmatch(r"\d\d:\d\d:\d\d", record["checkin_time"])


# tasks


async def test_tasks_need_home_id_or_reference_property_id(api):
    answer = await api.get("/task/", await api.headers())
    assert answer.status_code == 422
    assert set(answer.json()) == {"error", "description"}


async def test_task_listing_by_home_id_and_by_reference_property_id(api, sim):
    headers = await api.headers()
    prop = sim.truth(1001, "properties")[min(sim.truth(1001, "properties"))]
    by_home = await api.get_all("/task/", headers, home_id=prop["id"])
    expected = {tid: t for tid, t in sim.truth(1001, "tasks").items() if t["home_id"] == prop["id"]}
    assert {t["id"]: t for t in by_home} == expected
    by_ref = await api.get_all(
        "/task/", headers, reference_property_id=prop["reference_property_id"]
    )
    assert {t["id"] for t in by_ref} == set(expected)
    both_wrong = await api.get_all(
        "/task",
        headers,
        home_id=prop["id"] + 1,
        reference_property_id=prop["reference_property_id"],
    )
    assert both_wrong == []


@pytest.mark.parametrize("bad", ["2026-01-01", "2026-01-01,2026-02-01,2026-03-01", ""])
@pytest.mark.parametrize("field", ["scheduled_date", "created_at", "finished_at", "updated_at"])
async def test_task_ranges_need_two_dates(api, sim, field, bad):
    answer = await api.get(
        "/task/", await api.headers(), home_id=min(sim.truth(1001, "properties")), **{field: bad}
    )
    assert answer.status_code == 422
    assert "Length must be 2" in answer.json()["description"]


async def test_task_range_with_a_bad_date_is_422(api, sim):
    home = min(sim.truth(1001, "properties"))
    answer = await api.get(
        "/task/", await api.headers(), home_id=home, updated_at="2026-01-01,soon"
    )
    assert answer.status_code == 422


@pytest.mark.parametrize("field", ["scheduled_date", "created_at", "finished_at", "updated_at"])
async def test_task_ranges_are_inclusive_by_day(api_for, field):
    sim = Simulator(companies=1, scale=Scale(properties=1, tasks_per_property=60), seed=5)
    api = await api_for(sim)
    headers = await api.headers()
    home = min(sim.truth(1001, "properties"))
    tasks = sim.truth(1001, "tasks").values()
    days = sorted({t[field][:10] for t in tasks if t[field]})
    low, high = days[len(days) // 4], days[3 * len(days) // 4]
    listed = await api.get_all("/task/", headers, home_id=home, **{field: f"{low},{high}"})
    expected = {t["id"] for t in tasks if t[field] and low <= t[field][:10] <= high}
    assert {t["id"] for t in listed} == expected
    assert any(t[field] and t[field][:10] in (low, high) for t in listed)  # bounds included
    assert len(expected) < len(tasks)


async def test_task_type_department_filter(api, sim):
    headers = await api.headers()
    home = min(sim.truth(1001, "properties"))
    listed = await api.get_all("/task/", headers, home_id=home, type_department="housekeeping")
    assert listed and {t["type_department"] for t in listed} == {"housekeeping"}


async def test_get_one_task_and_404_for_unknown(api, sim):
    headers = await api.headers()
    tid, task = next(iter(sim.truth(1001, "tasks").items()))
    answer = await api.get(f"/task/{tid}", headers)
    assert answer.status_code == 200
    assert answer.json() == task
    missing = await api.get("/task/1", headers)
    assert missing.status_code == 404
    assert set(missing.json()) == {"error", "description"}


async def test_task_record_shape_and_values(api, sim):
    tasks = sim.truth(1001, "tasks")
    # The contract's field list (BREEZEWAY_API.md), as the listings declare it.
    expected = set(FIELDS["tasks"])
    assert {"assignments", "linked_reservation", "report_url", "summary"} <= expected
    for task in tasks.values():
        assert set(task) == expected
        assert re.fullmatch(r"\d+\.\d\d USD", task["rate_paid"])
        assert re.fullmatch(r"\d+:\d\d:\d\d", task["total_time"])
        assert set(task["type_task_status"]) == {"code", "name", "stage"}
        for assignment in task["assignments"]:
            assert set(assignment) == {
                "id",
                "assignee_id",
                "name",
                "employee_code",
                "expires_at",
                "type_task_user_status",
            }
    linked = [t["linked_reservation"] for t in tasks.values() if t["linked_reservation"]]
    assert linked and all(set(link) == {"id", "external_reservation_id"} for link in linked)


async def test_prod_shaped_data_has_old_linked_reservations_mixed_zones_and_wide_tasks():
    sim = Simulator(
        companies=1,
        scale=Scale(properties=20, reservations_per_property=10, tasks_per_property=100),
        seed=2,
    )

    tasks = sim.truth(1001, "tasks")
    reservations = sim.truth(1001, "reservations")
    old = [
        t
        for t in tasks.values()
        if t["linked_reservation"] and t["linked_reservation"]["id"] not in reservations
    ]
    assert old  # links to reservations no listing returns
    stamps = [t["created_at"] for t in tasks.values()] + [t["updated_at"] for t in tasks.values()]
    assert any(s.endswith("+00:00") for s in stamps) and any(len(s) == 19 for s in stamps)
    sizes = [len(orjson.dumps(t)) for t in tasks.values()]
    assert 1200 < sum(sizes) / len(sizes) < 2200
    assert {t["type_task_status"]["code"] for t in tasks.values()} >= {
        "created",
        "finished",
        "approved",
    }
    assert any(t["costs"] for t in tasks.values()) and any(t["supplies"] for t in tasks.values())
    assert any(t["photos"] for t in tasks.values()) and any(t["task_tags"] for t in tasks.values())
    # every stay has checkout within ~300 days back or later
    earliest = min(date.fromisoformat(r["checkout_date"]) for r in reservations.values())
    assert (sim.now().date() - earliest).days <= 305


# people, supplies, tags


async def test_people_is_a_plain_array_with_a_status_filter(api, sim):
    headers = await api.headers()
    everyone = (await api.get("/people", headers)).json()
    assert isinstance(everyone, list)
    assert {p["id"]: p for p in everyone} == sim.truth(1001, "people")
    active = (await api.get("/people", headers, status="active")).json()
    assert active and all(p["active"] for p in active)
    inactive = (await api.get("/people", headers, status="inactive")).json()
    invited = (await api.get("/people", headers, status="invited")).json()
    assert len(active) + len(inactive) + len(invited) == len(everyone)
    assert (await api.get("/people", headers, status="retired")).status_code == 422
    assert set(everyone[0]) == set(
        "id first_name last_name active accept_decline_tasks emails employee_code groups"
        " type_departments type_role availability".split()
    )


async def test_supplies_listing_matches_the_truth(api, sim):
    listed = await api.get_all("/supplies", await api.headers())
    assert {s["id"]: s for s in listed} == sim.truth(1001, "supplies")


@pytest.mark.parametrize("kind", ["task", "property", "reservation"])
async def test_three_tag_lists(api, sim, kind):
    answer = await api.get(f"/{kind}/tags", await api.headers())
    tags = answer.json()
    assert isinstance(tags, list) and len(tags) == 6
    truth = sim.truth(1001, "tags")
    assert {(kind, t["id"]): t for t in tags} == {k: v for k, v in truth.items() if k[0] == kind}
    for tag in tags:
        assert {"id", "name", "company_id"} <= set(tag)
        assert ("description" in tag) == (kind == "task")


async def test_unknown_path_is_a_json_404(api):
    answer = await api.get("/nothing", await api.headers())
    assert answer.status_code == 404
    assert set(answer.json()) == {"error", "description"}


async def test_paths_answer_with_and_without_trailing_slash(api):
    headers = await api.headers()
    for path in ("/property", "/property/", "/reservation/", "/supplies/", "/people/"):
        assert (await api.get(path, headers)).status_code == 200, path
