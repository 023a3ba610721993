"""Listings against the simulator over HTTP: every listing, ascending, page by page,
the server's limit cap, pages that shift, the same id twice."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from breezeway_daemon.api.client import BreezewayApi, BreezewayClient, ListingStats
from breezeway_daemon.entities import ENTITIES, Endpoint

from support.apienv import ApiEnv as Env
from support.apienv import EnvFactory, default_regions

PROPERTIES = ENTITIES["properties"].endpoints[0]
SUPPLIES = ENTITIES["supplies"].endpoints[0]
TASKS = ENTITIES["tasks"].endpoints[0]


async def ids_of(
    client: BreezewayClient,
    endpoint: Endpoint,
    params: dict[str, Any] | None = None,
    stats: ListingStats | None = None,
) -> list[Any]:
    return [r["id"] async for page in client.pages(endpoint, params, stats) for r in page]


def instant(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def test_every_listing_matches_the_truth(make_env: EnvFactory) -> None:
    regions = default_regions(1)
    regions["region_1"]["company_id"] = None  # found with GET /companies
    env = await make_env(companies=1, regions=regions, page_size=3)
    company_id = env.sim.companies[0].company_id
    client = env.api.client("region_1")
    assert await client.company_id() == company_id

    truth = {name: env.sim.truth(company_id, name) for name in ENTITIES}
    for name in ("properties", "supplies", "people"):
        listed = await ids_of(client, ENTITIES[name].endpoints[0])
        assert sorted(listed) == sorted(truth[name]), name
    reservations = await ids_of(
        client, ENTITIES["reservations"].endpoints[0], {"checkout_date_ge": "2000-01-01"}
    )
    assert sorted(reservations) == sorted(truth["reservations"])
    # Without a date filter only reservations checking out today or later are listed.
    upcoming = await ids_of(client, ENTITIES["reservations"].endpoints[0])
    today = datetime.now(UTC).date()
    assert sorted(upcoming) == sorted(
        rid for rid, r in truth["reservations"].items()
        if date.fromisoformat(r["checkout_date"]) >= today
    )  # fmt: skip
    tasks: list[Any] = []
    window = f"2000-01-01,{(today + timedelta(days=2)).isoformat()}"
    for property_id in truth["properties"]:
        tasks += await ids_of(client, TASKS, {"home_id": property_id, "updated_at": window})
    assert sorted(tasks) == sorted(truth["tasks"])
    tags = [
        (endpoint.tag_type, r["id"])
        for endpoint in ENTITIES["tags"].endpoints
        async for page in client.pages(endpoint)
        for r in page
    ]
    assert sorted(tags) == sorted(truth["tags"])
    # Every request named the company, except the task listings (by property).
    for sent in env.data_requests():
        if sent.path.endswith("/task/"):
            assert "company_id" not in sent.params
        elif not sent.path.endswith("/companies"):
            assert sent.params["company_id"] == str(company_id)


async def test_paged_listings_ask_for_ascending_order(make_env: EnvFactory) -> None:
    env = await make_env(page_size=3)
    client = env.api.client("region_1")
    supplies = [r async for page in client.pages(SUPPLIES) for r in page]
    created = [instant(r["created_at"]) for r in supplies]
    assert created == sorted(created)
    property_id = min(env.sim.truth(env.company("region_1").company_id, "properties"))
    tasks = [r async for page in client.pages(TASKS, {"home_id": property_id}) for r in page]
    assert len(tasks) > 3
    assert [instant(t["created_at"]) for t in tasks] == sorted(
        instant(t["created_at"]) for t in tasks
    )
    paged = [s for s in env.data_requests() if "page" in s.params]
    assert paged and all(s.params["sort_order"] == "asc" for s in paged)


async def test_the_same_id_on_two_pages_is_one_record(make_env: EnvFactory) -> None:
    env = await make_env(page_size=1)
    env.sim.faults.bad_records = {"duplicate_id"}  # the first record served twice
    stats = ListingStats()
    listed = await ids_of(env.api.client("region_1"), PROPERTIES, stats=stats)
    assert sorted(listed) == sorted(env.sim.truth(env.company("region_1").company_id, "properties"))
    assert len(listed) == len(set(listed))
    assert stats.repeats == 1
    assert stats.pages == len(listed) + 1  # the repeat had a page of its own


async def test_records_created_while_paging_land_at_the_end_and_none_is_lost(
    make_env: EnvFactory,
) -> None:
    env = await make_env(page_size=2)
    company_id = env.company("region_1").company_id
    before = set(env.sim.truth(company_id, "supplies"))
    env.sim.faults.shift_while_paging = 1  # each page >= 2 creates and changes a record
    stats = ListingStats()
    listed = await ids_of(env.api.client("region_1"), SUPPLIES, stats=stats)
    assert before <= set(listed)
    assert len(listed) == len(set(listed))
    assert stats.shifted


async def test_records_deleted_while_paging_mark_the_listing_as_shifted(
    make_env: EnvFactory,
) -> None:
    env = await make_env(page_size=2)
    env.sim.faults.delete_while_paging = 1  # records may be skipped: the caller must know
    stats = ListingStats()
    listed = await ids_of(env.api.client("region_1"), SUPPLIES, stats=stats)
    assert len(listed) == len(set(listed))
    assert stats.shifted


async def test_the_servers_limit_cap_is_honoured(make_env: EnvFactory) -> None:
    env = await make_env(page_size=100)
    env.sim.faults.page_limit_cap = 4
    company_id = env.company("region_1").company_id
    pages = [page async for page in env.api.client("region_1").pages(PROPERTIES)]
    truth = env.sim.truth(company_id, "properties")
    assert sorted(r["id"] for page in pages for r in page) == sorted(truth)
    assert all(len(page) <= 4 for page in pages)
    assert len(env.data_requests()) == math.ceil(len(truth) / 4)


async def test_listings_yield_page_by_page(make_env: EnvFactory) -> None:
    """The first page is in the caller's hands before the second is asked for."""
    env = await make_env(page_size=1)
    listing = env.api.client("region_1").pages(PROPERTIES)
    first = await anext(listing)
    assert len(first) == 1
    assert env.stats("region_1").paths["/public/inventory/v1/property"] == 1
    second = await anext(listing)
    assert second[0]["id"] != first[0]["id"]
    assert env.stats("region_1").paths["/public/inventory/v1/property"] == 2
    await listing.aclose()


async def test_a_listing_without_total_pages_stops_at_a_short_page(env: Env) -> None:
    """The contract's envelope has ``total_pages``; a client must not need it."""
    records = [{"id": n} for n in range(1, 8)]
    asked: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/public/auth/"):
            return httpx.Response(200, json={"access_token": "a.b.c", "refresh_token": "r.s.t"})
        page = int(request.url.params["page"])
        asked.append(page)
        return httpx.Response(
            200, json={"limit": 3, "page": page, "results": records[(page - 1) * 3 : page * 3]}
        )

    api = BreezewayApi(env.settings, env.pool, transport=httpx.MockTransport(answer))
    try:
        listed = await ids_of(api.client("region_1"), PROPERTIES)
    finally:
        await api.aclose()
    assert listed == list(range(1, 8))
    assert asked == [1, 2, 3]
