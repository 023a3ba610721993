"""The token cache against the simulator over HTTP: one refresh per credential at a time,
rotation-safe across processes, the runbook's force-refresh, rejected credentials, the auth
endpoints' rate limit. Counts are taken on the simulator's side."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from datetime import timedelta

import httpx
import pytest

from breezeway_daemon.api.client import BreezewayApi, CallCounter, count_calls
from breezeway_daemon.api.errors import AuthError, CredentialsRejected
from breezeway_daemon.api.tokens import TokenCache, jwt_expiry
from breezeway_daemon.db.pool import create_pool

from support.apienv import ApiEnv as Env
from support.apienv import EnvFactory, default_regions, utcnow

COMPANIES = "/companies"
RUNBOOK_FORCE_REFRESH = """
UPDATE breezeway.api_tokens
SET access_token = NULL,
    refresh_token = NULL,
    token_expires_at = NOW() - INTERVAL '1 hour'
WHERE region_code = $1
"""


async def test_fifty_concurrent_requests_meeting_an_expired_token_cause_one_refresh(
    env: Env,
) -> None:
    await env.plant_token("region_1", access_ttl_s=-60)  # expired a minute ago
    client = env.api.client("region_1")
    async with asyncio.timeout(10):
        answers = await asyncio.gather(*(client.get(COMPANIES) for _ in range(50)))
    assert all(a == [env.company("region_1").as_json()] for a in answers)
    stats = env.stats("region_1")
    assert (stats.refreshes, stats.logins, stats.auth_requests) == (1, 0, 1)
    assert stats.unauthorized == 0
    row = await env.token_row("region_1")
    assert row["token_generation_count"] == 2
    assert row["token_expires_at"] > utcnow() + timedelta(hours=23)
    assert row["last_error"] is None


async def test_fifty_concurrent_401s_cause_one_refresh_and_one_repeat_each(env: Env) -> None:
    # The row believes the token is good for a day; the API says it expired (clock skew,
    # early revocation of access tokens): every request meets a 401.
    await env.plant_token("region_1", access_ttl_s=-60, stored_expiry=utcnow() + timedelta(days=1))
    client = env.api.client("region_1")
    async with asyncio.timeout(10):
        answers = await asyncio.gather(*(client.get(COMPANIES) for _ in range(50)))
    assert len(answers) == 50
    stats = env.stats("region_1")
    assert (stats.refreshes, stats.logins, stats.auth_requests) == (1, 0, 1)
    assert stats.unauthorized == 50
    assert stats.data_requests == 100  # each request repeated exactly once
    assert (await env.token_row("region_1"))["token_generation_count"] == 2


async def test_a_401_right_after_renewal_fails_instead_of_looping(
    make_env: EnvFactory,
) -> None:
    env = await make_env()
    pair = env.sim.tokens.issue(env.company("region_1"), 86400, 86400)
    calls = {"data": 0, "auth": 0}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/public/auth/"):
            calls["auth"] += 1
            return httpx.Response(200, json=pair)
        calls["data"] += 1
        return httpx.Response(401, json={"error": "Unauthorized", "description": "no"})

    api = BreezewayApi(env.settings, env.pool, transport=httpx.MockTransport(answer))
    try:
        await env.plant_token("region_1")
        with pytest.raises(AuthError) as caught:
            async with asyncio.timeout(5):
                await api.client("region_1").get(COMPANIES)
    finally:
        await api.aclose()
    assert calls == {"data": 2, "auth": 1}
    assert caught.value.status == 401 and caught.value.region == "region_1"


async def test_a_failed_renewal_is_shared_by_the_callers_waiting_for_it(
    make_env: EnvFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The auth endpoint hangs past the HTTP timeout, every time: twenty callers meet one
    renewal's bounded retries together, not twenty in a row."""
    import breezeway_daemon.api.tokens as tokens

    monkeypatch.setattr(tokens, "AUTH_RETRY_S", 0.2)  # the real interval is a minute
    env = await make_env(http_timeout_s=0.3)
    env.sim.faults.latency_s = 1.0
    client = env.api.client("region_1")
    started = time.monotonic()
    async with asyncio.timeout(10):
        errors = await asyncio.gather(
            *(client.get(COMPANIES) for _ in range(20)), return_exceptions=True
        )
    assert all(isinstance(e, AuthError) and e.region == "region_1" for e in errors), errors
    assert "ReadTimeout" in str(errors[0])
    assert len(env.auth_requests()) == tokens.MAX_AUTH_ATTEMPTS
    assert time.monotonic() - started < tokens.MAX_AUTH_ATTEMPTS * (0.3 + 0.2) + 1.0
    row = await env.token_row("region_1")
    assert row["last_error"] and "ReadTimeout" in row["last_error"]


async def test_two_caches_on_separate_pools_spend_the_refresh_token_once(env: Env) -> None:
    """Two processes (two pools, two HTTP clients, two caches) renew the same expired token
    at the same moment: one refresh, the other process reuses its result."""
    await env.plant_token("region_1", access_ttl_s=-60)
    env.sim.faults.latency_s = 0.3  # keep the first refresh in flight while the second asks
    pools = [await create_pool(env.settings, max_size=3) for _ in range(2)]
    https = [httpx.AsyncClient(base_url=env.settings.api_base_url) for _ in range(2)]
    caches = [TokenCache(p, h, env.settings) for p, h in zip(pools, https, strict=True)]
    try:
        async with asyncio.timeout(10):
            tokens = await asyncio.gather(*(c.get("region_1") for c in caches))
    finally:
        for h in https:
            await h.aclose()
        for p in pools:
            p.terminate()  # a renewal left behind by a failed assertion must not hold it up
    assert tokens[0] == tokens[1]
    stats = env.stats("region_1")
    assert (stats.refreshes, stats.logins, stats.auth_requests, stats.unauthorized) == (
        1, 0, 1, 0,
    )  # fmt: skip
    row = await env.token_row("region_1")
    assert row["token_generation_count"] == 2
    assert row["access_token"] == tokens[0]


async def test_operator_nulled_token_is_replaced_on_the_next_request(env: Env) -> None:
    planted = await env.plant_token("region_1")
    client = env.api.client("region_1")
    await client.get(COMPANIES)
    await env.pool.execute(RUNBOOK_FORCE_REFRESH, "region_1")
    async with asyncio.timeout(10):
        await client.get(COMPANIES)
    data = env.data_requests()
    assert data[0].token == planted["access_token"]
    assert data[1].token != planted["access_token"]
    row = await env.token_row("region_1")
    assert row["access_token"] == data[1].token
    assert row["refresh_token"] is not None
    assert row["token_generation_count"] == 2
    assert row["token_expires_at"] > utcnow() + timedelta(hours=23)
    # The refresh token was NULLed too: the cache logged in with the client credentials.
    assert (env.stats("region_1").logins, env.stats("region_1").refreshes) == (1, 0)


async def test_token_is_reused_until_a_few_minutes_before_its_expiry(env: Env) -> None:
    planted = await env.plant_token("region_1", access_ttl_s=3600)
    client = env.api.client("region_1")
    for _ in range(5):
        await client.get(COMPANIES)
    assert env.stats("region_1").auth_requests == 0
    # A day later, inside the renewal margin (5 minutes): renewed before the API refuses it.
    await env.pool.execute(
        "UPDATE breezeway.api_tokens SET token_expires_at = now() + interval '200 seconds', "
        "last_refreshed_at = now() - interval '1 day' + interval '200 seconds' "
        "WHERE region_code = 'region_1'"
    )
    async with asyncio.timeout(10):
        await client.get(COMPANIES)
    stats = env.stats("region_1")
    assert (stats.refreshes, stats.logins, stats.unauthorized) == (1, 0, 0)
    row = await env.token_row("region_1")
    assert row["access_token"] != planted["access_token"]
    assert row["token_expires_at"] == jwt_expiry(row["access_token"], timedelta(0))


async def test_a_short_lived_token_is_not_renewed_on_every_call(env: Env) -> None:
    # The API's tokens may live less than the renewal margin (5 min): still reused.
    await env.plant_token("region_1", access_ttl_s=120)
    client = env.api.client("region_1")
    for _ in range(5):
        await client.get(COMPANIES)
    assert env.stats("region_1").auth_requests == 0


async def test_wrong_secret_is_a_permanent_error_naming_the_region_with_one_login(
    make_env: EnvFactory,
) -> None:
    regions = default_regions()
    regions["region_1"]["client_secret"] = "not-the-secret"
    env = await make_env(regions=regions)
    client = env.api.client("region_1")
    errors: list[BaseException] = []
    async with asyncio.timeout(10):
        for _ in range(3):
            with pytest.raises(CredentialsRejected) as caught:
                await client.get(COMPANIES)
            errors.append(caught.value)
        errors += await asyncio.gather(
            *(client.get(COMPANIES) for _ in range(10)), return_exceptions=True
        )
    assert all(isinstance(e, CredentialsRejected) for e in errors), errors
    assert all(e.region == "region_1" and "region_1" in str(e) for e in errors)  # type: ignore[attr-defined]
    assert "not-the-secret" not in str(errors[0])
    stats = env.stats("region_1")
    assert (stats.auth_requests, stats.logins, stats.data_requests) == (1, 0, 0)
    row = await env.token_row("region_1")
    assert row["last_error"] and "invalid client credentials" in row["last_error"]
    assert row["access_token"] is None
    # The other region is not affected.
    assert await env.api.client("region_2").get(COMPANIES)


async def test_inactive_client_without_a_token_is_rejected_with_one_login(env: Env) -> None:
    env.sim.disable_client(env.company("region_1").company_id)
    client = env.api.client("region_1")
    async with asyncio.timeout(10):
        for _ in range(3):
            with pytest.raises(CredentialsRejected, match="inactive client") as caught:
                await client.get(COMPANIES)
            assert caught.value.region == "region_1"
    assert env.stats("region_1").auth_requests == 1
    row = await env.token_row("region_1")
    assert row["last_error"] and "inactive client" in row["last_error"]


async def test_inactive_client_with_a_token_is_rejected_after_one_refresh(env: Env) -> None:
    """Data answers 401, the refresh answers "inactive client": no login after it (the
    client is inactive either way), no waiting for the auth endpoints' limit."""
    await env.plant_token("region_1")
    env.sim.disable_client(env.company("region_1").company_id)
    client = env.api.client("region_1")
    started = time.monotonic()
    async with asyncio.timeout(10):
        for _ in range(3):
            with pytest.raises(CredentialsRejected, match="inactive client"):
                await client.get(COMPANIES)
    assert time.monotonic() - started < 3
    stats = env.stats("region_1")
    assert (stats.auth_requests, stats.auth_rate_limited) == (1, 0)
    row = await env.token_row("region_1")
    assert row["last_error"] and "inactive client" in row["last_error"]


def age_auth_attempts(env: Env, region: str, ages_s: list[float]) -> None:
    """Pretend the credential made auth attempts ``ages_s`` seconds ago.

    The simulator's auth window is a fixed minute; planting old attempts in its limiter is
    how a test meets a 429 whose reset is a second or two away instead of a minute.
    """
    now = time.monotonic()
    client_id = env.company(region).client_id
    env.sim.auth_limiter._attempts[client_id] = deque(sorted(now - age for age in ages_s))


async def test_auth_429_is_waited_out_not_hammered(env: Env) -> None:
    env.sim.faults.auth_rate_limit_per_minute = 2
    age_auth_attempts(env, "region_1", [58.8, 58.7])  # the window frees up in ~1.3 s
    client = env.api.client("region_1")
    started = time.monotonic()
    async with asyncio.timeout(10):
        answers = await asyncio.gather(*(client.get(COMPANIES) for _ in range(10)))
    assert len(answers) == 10
    stats = env.stats("region_1")
    assert (stats.auth_requests, stats.auth_rate_limited, stats.logins) == (2, 1, 1)
    login_at = next(t for t, kind in stats.events if kind == "login")
    assert login_at - started >= 1.2


async def test_auth_429_beyond_the_wait_budget_fails_without_hammering(env: Env) -> None:
    # A reset a minute away (the default: one attempt per minute, just spent) is waited
    # for up to the budget; past it the request fails with an AuthError, after one attempt.
    age_auth_attempts(env, "region_1", [1.0])
    import breezeway_daemon.api.tokens as tokens

    original = tokens.MAX_AUTH_WAIT_S
    tokens.MAX_AUTH_WAIT_S = 5.0
    try:
        with pytest.raises(AuthError, match="rate limit") as caught:
            async with asyncio.timeout(10):
                await env.api.client("region_1").get(COMPANIES)
    finally:
        tokens.MAX_AUTH_WAIT_S = original
    assert caught.value.region == "region_1"
    stats = env.stats("region_1")
    assert (stats.auth_requests, stats.auth_rate_limited) == (1, 1)


async def test_one_regions_token_is_never_sent_on_another_regions_requests(env: Env) -> None:
    await env.plant_token("region_1")
    await env.plant_token("region_2")
    counters = {"region_1": CallCounter(), "region_2": CallCounter()}
    from breezeway_daemon.entities import ENTITIES

    async def list_everything(region: str) -> None:
        client = env.api.client(region)
        with count_calls(counters[region]):
            for name in ("properties", "people", "supplies", "tags"):
                for endpoint in ENTITIES[name].endpoints:
                    async for _ in client.pages(endpoint):
                        pass
            await client.get(COMPANIES)

    async with asyncio.timeout(10):
        await asyncio.gather(*(list_everything(r) for r in ("region_1", "region_2") * 2))
    for region in ("region_1", "region_2"):
        company = env.company(region)
        stats = env.stats(region)
        assert stats.data_requests == counters[region].calls > 0
        assert stats.unauthorized == 0
        # Every request naming this company carried this company's token.
        for sent in env.data_requests():
            if sent.params.get("company_id") == str(company.company_id):
                assert sent.token and env.token_owner(sent.token) == company.client_id


@pytest.mark.parametrize("fault", ["auth_errors", "auth_stalls"])
async def test_a_transient_auth_failure_is_retried_after_the_auth_interval(
    make_env: EnvFactory, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """A 503 or a hung auth call at token renewal waits the auth endpoints' interval and
    tries again: the request succeeds instead of failing the region's runs."""
    import breezeway_daemon.api.tokens as tokens

    monkeypatch.setattr(tokens, "AUTH_RETRY_S", 0.5)  # the real interval is a minute
    env = await make_env(http_timeout_s=0.5)
    env.sim.faults.auth_rate_limit_per_minute = None
    env.sim.faults.stall_s = 3
    setattr(env.sim.faults, fault, 2)
    async with asyncio.timeout(10):
        answers = await asyncio.gather(
            *(env.api.client("region_1").get(COMPANIES) for _ in range(5))
        )
    assert all(a == [env.company("region_1").as_json()] for a in answers)
    stats = env.stats("region_1")
    assert (stats.auth_requests, stats.logins) == (3, 1)
    attempts = [sent.at for sent in env.auth_requests()]
    assert len(attempts) == 3
    assert all(b - a >= 0.5 for a, b in zip(attempts, attempts[1:], strict=False))
    assert (await env.token_row("region_1"))["last_error"] is None


async def test_auth_failures_are_retried_a_bounded_number_of_times(
    make_env: EnvFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import breezeway_daemon.api.tokens as tokens

    monkeypatch.setattr(tokens, "AUTH_RETRY_S", 0.2)
    env = await make_env()
    env.sim.faults.auth_rate_limit_per_minute = None
    env.sim.faults.auth_errors = 100
    with pytest.raises(AuthError, match="503") as caught:
        async with asyncio.timeout(10):
            await env.api.client("region_1").get(COMPANIES)
    assert caught.value.region == "region_1"
    assert env.stats("region_1").auth_requests == tokens.MAX_AUTH_ATTEMPTS
    row = await env.token_row("region_1")
    assert row["last_error"] and "503" in row["last_error"]
