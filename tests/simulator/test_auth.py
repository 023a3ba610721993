"""Contract section 1 (authentication) and the 401 rules of section 2, in-process."""

from __future__ import annotations

import base64
import json
import time

import pytest

from breezeway_sim.auth import TokenError, decode_jwt, encode_jwt


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def header_of(token: str) -> dict:
    head = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))


async def test_login_answers_two_hs256_jwts_with_exp(api):
    pair = await api.login()
    assert set(pair) == {"access_token", "refresh_token"}
    for token in pair.values():
        assert header_of(token) == {"alg": "HS256", "typ": "JWT"}
    access, refresh = claims_of(pair["access_token"]), claims_of(pair["refresh_token"])
    now = time.time()
    assert access["exp"] - now == pytest.approx(86400, abs=5)
    assert refresh["exp"] - now == pytest.approx(30 * 86400, abs=5)
    assert "expires_in" not in pair


def test_jwt_signature_is_checked():
    token = encode_jwt({"sub": "x", "exp": 1}, b"key")
    assert decode_jwt(token, b"key") == {"sub": "x", "exp": 1}
    with pytest.raises(TokenError):
        decode_jwt(token, b"other key")
    head, payload, sig = token.split(".")
    forged = base64.urlsafe_b64encode(b'{"sub":"y","exp":1}').rstrip(b"=").decode()
    with pytest.raises(TokenError):
        decode_jwt(f"{head}.{forged}.{sig}", b"key")
    with pytest.raises(TokenError):
        decode_jwt("not-a-jwt", b"key")


async def test_token_lifetimes_follow_the_faults(api, sim):
    sim.faults.access_token_ttl_s = 120
    sim.faults.refresh_token_ttl_s = 600
    pair = await api.login()
    assert claims_of(pair["access_token"])["exp"] - time.time() == pytest.approx(120, abs=3)
    assert claims_of(pair["refresh_token"])["exp"] - time.time() == pytest.approx(600, abs=3)


async def test_wrong_secret_is_200_with_an_empty_body(api, sim):
    company = sim.companies[0]
    answer = await api.client.post(
        api.LOGIN, json={"client_id": company.client_id, "client_secret": "wrong"}
    )
    assert answer.status_code == 200
    assert answer.content == b""
    unknown = await api.client.post(api.LOGIN, json={"client_id": "nobody", "client_secret": "x"})
    assert (unknown.status_code, unknown.content) == (200, b"")


async def test_malformed_login_body_is_400(api):
    answer = await api.client.post(api.LOGIN, content=b"client_id=x")
    assert answer.status_code == 400
    assert set(answer.json()) == {"error", "description"}


async def test_inactive_client_gets_error_body_until_enabled(api, sim):
    headers = await api.headers()
    sim.disable_client(1001)
    company = sim.companies[0]
    answer = await api.client.post(
        api.LOGIN, json={"client_id": company.client_id, "client_secret": company.client_secret}
    )
    assert answer.status_code == 200
    assert answer.json() == {"error": "inactive client"}
    data = await api.get("/property", headers)
    assert data.status_code == 401
    sim.disable_client(1001, disabled=False)
    assert (await api.get("/property", headers)).status_code == 200
    await api.login()


async def test_refresh_rotates_and_the_old_refresh_token_dies(api):
    pair = await api.login()
    first = await api.client.post(
        api.REFRESH, headers={"Authorization": f"JWT {pair['refresh_token']}"}
    )
    assert first.status_code == 200
    new_pair = first.json()
    assert set(new_pair) == {"access_token", "refresh_token"}
    assert new_pair["refresh_token"] != pair["refresh_token"]
    again = await api.client.post(
        api.REFRESH, headers={"Authorization": f"JWT {pair['refresh_token']}"}
    )
    assert again.status_code == 401
    assert set(again.json()) == {"error", "description"}
    ok = await api.get("/property", {"Authorization": f"JWT {new_pair['access_token']}"})
    assert ok.status_code == 200
    second = await api.client.post(
        api.REFRESH, headers={"Authorization": f"JWT {new_pair['refresh_token']}"}
    )
    assert second.status_code == 200


async def test_refresh_rejects_access_tokens_garbage_and_missing_header(api):
    pair = await api.login()
    for headers in (
        {"Authorization": f"JWT {pair['access_token']}"},
        {"Authorization": "JWT garbage"},
        {"Authorization": f"Bearer {pair['refresh_token']}"},
        {},
    ):
        answer = await api.client.post(api.REFRESH, headers=headers)
        assert answer.status_code == 401, headers
        assert set(answer.json()) == {"error", "description"}


async def test_expired_refresh_token_is_401_and_login_still_works(api, sim):
    sim.faults.refresh_token_ttl_s = -10  # already expired when issued
    pair = await api.login()
    answer = await api.client.post(
        api.REFRESH, headers={"Authorization": f"JWT {pair['refresh_token']}"}
    )
    assert answer.status_code == 401
    assert "expired" in answer.json()["description"]
    sim.faults.refresh_token_ttl_s = 3600
    await api.login()


@pytest.mark.parametrize(
    "make_header",
    [
        lambda pair: {},
        lambda pair: {"Authorization": "JWT"},
        lambda pair: {"Authorization": "JWT not.a.token"},
        lambda pair: {"Authorization": f"Bearer {pair['access_token']}"},
        lambda pair: {"Authorization": f"JWT {pair['refresh_token']}"},
        lambda pair: {"Authorization": f"JWT {pair['access_token']}x"},
    ],
    ids=["missing", "empty", "malformed", "bearer", "refresh-token", "bad-signature"],
)
async def test_data_requests_without_a_valid_access_token_are_401(api, make_header):
    pair = await api.login()
    answer = await api.get("/property", make_header(pair))
    assert answer.status_code == 401
    body = answer.json()
    assert body["error"] == "Unauthorized"
    assert body["description"]


async def test_expired_access_token_is_401(api, sim):
    sim.faults.access_token_ttl_s = -1
    expired = await api.headers()
    answer = await api.get("/property", expired)
    assert answer.status_code == 401
    assert "expired" in answer.json()["description"]
    assert sim.stats["sim-client-1"].unauthorized == 1


async def test_revoke_kills_access_and_refresh_tokens_of_that_client_only(api, sim):
    pair = await api.login()
    other = await api.headers(1)
    sim.revoke_tokens(1001)
    access = await api.get("/property", {"Authorization": f"JWT {pair['access_token']}"})
    assert access.status_code == 401
    refresh = await api.client.post(
        api.REFRESH, headers={"Authorization": f"JWT {pair['refresh_token']}"}
    )
    assert refresh.status_code == 401
    assert (await api.get("/property", other)).status_code == 200
    assert (await api.get("/property", await api.headers())).status_code == 200


async def test_auth_counters(api, sim):
    pair = await api.login()
    await api.client.post(api.REFRESH, headers={"Authorization": f"JWT {pair['refresh_token']}"})
    stats = sim.stats["sim-client-1"]
    assert (stats.logins, stats.refreshes, stats.auth_requests) == (1, 1, 2)
    assert [kind for _, kind in stats.events] == ["login", "refresh"]
