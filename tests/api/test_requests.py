"""Requests against the simulator over HTTP: 5xx and timeouts retried with bounded backoff,
other 4xx at once, 429s waited out together, the pace held under the setting."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

import breezeway_daemon.api.client as client_module
from breezeway_daemon.api.client import CallCounter, count_calls
from breezeway_daemon.api.errors import PermanentApiError, TransientApiError
from breezeway_daemon.entities import ENTITIES
from breezeway_sim import Scale

from support.apienv import ApiEnv as Env
from support.apienv import EnvFactory

COMPANIES = "/companies"


def fixed_backoff(
    monkeypatch: pytest.MonkeyPatch, delay: float, on_attempt: dict[int, object] | None = None
) -> list[int]:
    """Make the backoff ``delay`` seconds; run ``on_attempt[n]()`` when attempt n failed."""
    attempts: list[int] = []

    def backoff(attempt: int) -> float:
        attempts.append(attempt)
        action = (on_attempt or {}).get(attempt)
        if action is not None:
            action()  # type: ignore[operator]
        return delay

    monkeypatch.setattr(client_module, "_backoff", backoff)
    return attempts


def test_backoff_is_exponential_with_full_jitter() -> None:
    random.seed(4)
    for attempt in range(1, 12):
        ceiling = min(client_module.BACKOFF_CAP_S, client_module.BACKOFF_BASE_S * 2**attempt)
        delays = [client_module._backoff(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8 and min(delays) < ceiling * 0.2


async def test_5xx_are_retried_with_backoff_then_succeed(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    await env.plant_token("region_1")
    env.sim.faults.error_rate = 1.0

    def heal() -> None:
        env.sim.faults.error_rate = 0.0

    attempts = fixed_backoff(monkeypatch, 0.2, {2: heal})
    counter = CallCounter()
    with count_calls(counter):
        answer = await env.api.client("region_1").get(COMPANIES)
    assert answer == [env.company("region_1").as_json()]
    stats = env.stats("region_1")
    assert (stats.server_errors, stats.data_requests) == (2, 3)
    assert attempts == [1, 2]
    assert (counter.calls, counter.retries) == (3, 2)
    gaps = [b - a for a, b in zip(stats.request_times, stats.request_times[1:], strict=False)]
    assert all(gap >= 0.2 for gap in gaps), gaps


async def test_a_run_of_5xx_beyond_the_attempts_fails_without_a_sleep_after_the_last(
    make_env: EnvFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = await make_env(http_max_attempts=3)
    await env.plant_token("region_1")
    env.sim.faults.error_rate = 1.0
    fixed_backoff(monkeypatch, 0.5)
    with pytest.raises(TransientApiError) as caught:
        await env.api.client("region_1").get(COMPANIES)
    raised_at = time.monotonic()
    stats = env.stats("region_1")
    assert stats.server_errors == stats.data_requests == 3
    # The last answer came back and the error was raised at once (a sleep would be 0.5 s).
    assert raised_at - stats.request_times[-1] < 0.4
    assert caught.value.status in (500, 502, 503, 504)
    assert caught.value.region == "region_1" and caught.value.endpoint == COMPANIES
    assert "after 3 attempts" in str(caught.value)


async def test_retries_stop_at_the_time_budget(
    make_env: EnvFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = await make_env(http_max_attempts=10, http_retry_budget_s=1.0)
    await env.plant_token("region_1")
    env.sim.faults.error_rate = 1.0
    fixed_backoff(monkeypatch, 0.6)
    started = time.monotonic()
    with pytest.raises(TransientApiError, match="after 2 attempts"):
        await env.api.client("region_1").get(COMPANIES)
    assert env.stats("region_1").data_requests == 2
    assert time.monotonic() - started < 1.0


async def test_timeouts_are_retried_then_fail_cleanly(
    make_env: EnvFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = await make_env(http_timeout_s=0.25, http_max_attempts=3)
    await env.plant_token("region_1")
    env.sim.faults.latency_s = 1.0  # beyond the client's timeout
    fixed_backoff(monkeypatch, 0.05)
    started = time.monotonic()
    with pytest.raises(TransientApiError, match="timed out after 3 attempts") as caught:
        await env.api.client("region_1").get(COMPANIES)
    elapsed = time.monotonic() - started
    assert len(env.data_requests()) == 3
    assert 3 * 0.25 <= elapsed < 3 * 0.25 + 2 * 0.05 + 0.5
    assert caught.value.status is None and caught.value.region == "region_1"


async def test_a_timeout_is_retried_and_the_retry_succeeds(
    make_env: EnvFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = await make_env(http_timeout_s=0.25)
    await env.plant_token("region_1")
    env.sim.faults.latency_s = 1.0

    def heal() -> None:
        env.sim.faults.latency_s = 0.0

    fixed_backoff(monkeypatch, 0.05, {1: heal})
    answer = await env.api.client("region_1").get(COMPANIES)
    assert answer == [env.company("region_1").as_json()]
    assert len(env.data_requests()) == 2


async def test_connection_errors_are_retried_then_fail_cleanly(
    make_env: EnvFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = await make_env(http_max_attempts=3)
    await env.plant_token("region_1")
    await env.server.stop()  # nothing listens on the port any more
    attempts = fixed_backoff(monkeypatch, 0.05)
    with pytest.raises(
        TransientApiError, match=r"connection error \(ConnectError\) after 3"
    ) as caught:
        await env.api.client("region_1").get(COMPANIES)
    assert attempts == [1, 2, 3] and len(env.data_requests()) == 3
    assert caught.value.region == "region_1"


async def test_other_4xx_fail_at_once_with_status_endpoint_params_and_body(env: Env) -> None:
    planted = await env.plant_token("region_1")
    home_id = min(env.sim.data(env.company("region_1").company_id).properties)
    params = {"home_id": home_id, "updated_at": "2026-05-01"}  # one date: "Length must be 2"
    with pytest.raises(PermanentApiError) as caught:
        await env.api.client("region_1").get("/task/", params)
    err = caught.value
    assert err.status == 422
    assert err.endpoint == "/task/"
    assert err.params == params
    assert err.body and "Length must be 2" in err.body
    text = str(err)
    for part in ("region_1", "HTTP 422", "GET /task/", "updated_at=2026-05-01", "Length must be 2"):
        assert part in text
    assert planted["access_token"] not in text and "JWT" not in text
    assert env.stats("region_1").data_requests == 1  # not retried


async def test_another_companys_id_is_refused_at_once(env: Env) -> None:
    await env.plant_token("region_1")
    other = env.company("region_2").company_id
    with pytest.raises(PermanentApiError) as caught:
        await env.api.client("region_1").get("/property", {"company_id": other})
    assert caught.value.status == 403
    assert env.stats("region_1").data_requests == 1


async def test_a_429_burst_delays_every_request_and_provokes_no_further_429(
    make_env: EnvFactory,
) -> None:
    env = await make_env(max_in_flight_per_credential=4)
    await env.plant_token("region_1")
    burst_s = 1.0
    env.sim.faults.burst_429(seconds=burst_s, company_id=env.company("region_1").company_id)
    started = time.monotonic()
    client = env.api.client("region_1")
    counter = CallCounter()

    async def timed() -> float:
        await client.get(COMPANIES)
        return time.monotonic() - started

    with count_calls(counter):
        async with asyncio.timeout(10):
            durations = await asyncio.gather(*(timed() for _ in range(20)))
    assert min(durations) >= burst_s
    stats = env.stats("region_1")
    # Only the first wave (the requests in flight when the first 429 came back) met the
    # burst; everything after waited for its end, once, together.
    assert 1 <= stats.rate_limited <= 4
    assert counter.rate_limited == stats.rate_limited
    assert stats.data_requests == 20 + stats.rate_limited
    # The wait is shared, not stacked per request: the whole batch ends a little after the
    # reset (given to the second, plus one second of rounding margin).
    assert max(durations) < burst_s + 3.0


async def test_a_429_with_retry_after_n_delays_the_following_requests_by_n(
    make_env: EnvFactory,
) -> None:
    env = await make_env(max_in_flight_per_credential=1)
    await env.plant_token("region_1")
    retry_after_s = 2.0
    env.sim.faults.burst_429(count=1, retry_after_s=retry_after_s)
    client = env.api.client("region_1")
    started = time.monotonic()
    async with asyncio.timeout(10):
        await asyncio.gather(*(client.get(COMPANIES) for _ in range(5)))
    stats = env.stats("region_1")
    assert stats.rate_limited == 1
    assert stats.data_requests == 6
    assert all(t - started >= retry_after_s for t in stats.request_times[1:])


async def test_the_pace_stays_under_the_setting_over_a_long_listing(
    make_env: EnvFactory,
) -> None:
    """Two listings of one credential at once, 20 pages each, at 10 requests per (shortened)
    window: counted on the simulator's side, no window of that length holds more than 10."""
    limit, window_s = 10, 1.0
    env = await make_env(
        companies=1,
        scale=Scale(properties=20),
        page_size=1,
        requests_per_minute=limit,
        max_in_flight_per_credential=4,
        pacing_window_s=window_s,  # no margin: the guarantee is exact
    )
    await env.plant_token("region_1")
    endpoint = ENTITIES["properties"].endpoints[0]
    started = time.monotonic()

    async def listing() -> int:
        client = env.api.client("region_1")  # a new client, the credential's one pacer
        return sum([len(page) async for page in client.pages(endpoint)])

    async with asyncio.timeout(20):
        counts = await asyncio.gather(listing(), listing())
    assert counts == [20, 20]
    client_id = env.company("region_1").client_id
    stats = env.stats("region_1")
    assert stats.data_requests == 40 and stats.rate_limited == 0
    assert env.sim.stats.max_requests_in_window(client_id, window_s) <= limit
    # ... and the limiter does not crawl: 40 requests at 10 per window take ~3 windows.
    assert time.monotonic() - started < 40 / limit * window_s + 1.5


async def test_requests_in_flight_are_capped_per_credential(make_env: EnvFactory) -> None:
    env = await make_env(max_in_flight_per_credential=3)
    await env.plant_token("region_1")
    await env.plant_token("region_2")
    env.sim.faults.latency_s = 0.05
    in_flight = {"region_1": 0, "region_2": 0}
    peak = dict(in_flight)
    owners = {env.company(r).client_id: r for r in in_flight}

    async def on_request(request) -> None:  # type: ignore[no-untyped-def]
        region = owners[env.token_owner(request.headers["authorization"].removeprefix("JWT "))]
        in_flight[region] += 1
        peak[region] = max(peak[region], in_flight[region])

    async def on_response(response) -> None:  # type: ignore[no-untyped-def]
        token = response.request.headers["authorization"].removeprefix("JWT ")
        in_flight[owners[env.token_owner(token)]] -= 1

    env.api.http.event_hooks["request"].append(on_request)
    env.api.http.event_hooks["response"].append(on_response)
    clients = [env.api.client(r) for r in ("region_1", "region_2") for _ in range(2)]
    async with asyncio.timeout(10):
        await asyncio.gather(*(c.get(COMPANIES) for c in clients for _ in range(10)))
    assert peak == {"region_1": 3, "region_2": 3}
