"""Over real HTTP on 127.0.0.1: the server, the rate limits, latency, stalls; and the CLI."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from datetime import UTC, datetime

import httpx
import pytest

from breezeway_sim import Simulator, SimulatorServer, region_env_lines


def retry_after_of(answer: httpx.Response) -> datetime:
    return datetime.fromisoformat(answer.json()["details"]["retry_after"]).replace(tzinfo=UTC)


async def test_server_listens_on_a_free_local_port(server, http_api):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.base_url)
    assert server.port > 0
    answer = await http_api.get("/companies", await http_api.headers())
    assert answer.status_code == 200
    assert answer.json()[0]["id"] == 1001


async def test_server_stops_and_frees_its_port():
    sim = Simulator(companies=1)
    async with SimulatorServer(sim) as server:
        url = server.base_url
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(url + "/public/inventory/v1/companies")


async def test_auth_limit_one_per_minute_with_retry_after_header(http_api, sim):
    sim.faults.auth_rate_limit_per_minute = 1
    company = sim.companies[0]
    body = {"client_id": company.client_id, "client_secret": company.client_secret}
    assert (await http_api.client.post(http_api.LOGIN, json=body)).status_code == 200
    refused = await http_api.client.post(http_api.LOGIN, json=body)
    assert refused.status_code == 429
    assert 55 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["details"]["message"] == "Rate limit exceeded"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", refused.json()["details"]["retry_after"])
    assert 55 <= (retry_after_of(refused) - datetime.now(UTC)).total_seconds() <= 61
    again = await http_api.client.post(http_api.LOGIN, json=body)  # early retries stay refused
    assert again.status_code == 429
    # refresh shares the limit; another client has its own
    other = sim.companies[1]
    assert (
        await http_api.client.post(
            http_api.LOGIN,
            json={"client_id": other.client_id, "client_secret": other.client_secret},
        )
    ).status_code == 200
    stats = sim.stats[company.client_id]
    assert (stats.auth_requests, stats.logins, stats.auth_rate_limited) == (3, 1, 2)


async def test_refresh_counts_against_the_auth_limit(http_api, sim):
    pair = await http_api.login()
    sim.faults.auth_rate_limit_per_minute = 1
    answer = await http_api.client.post(
        http_api.REFRESH, headers={"Authorization": f"JWT {pair['refresh_token']}"}
    )
    assert answer.status_code == 429
    assert "retry-after" in answer.headers


async def test_data_rate_limit_per_credential_over_http(http_api, sim):
    sim.faults.data_rate_limit_per_minute = 20
    headers = await http_api.headers()
    answers = await asyncio.gather(*(http_api.get("/people", headers) for _ in range(25)))
    codes = [a.status_code for a in answers]
    assert codes.count(200) == 20 and codes.count(429) == 5
    refused = next(a for a in answers if a.status_code == 429)
    assert "retry-after" not in refused.headers
    assert 55 <= (retry_after_of(refused) - datetime.now(UTC)).total_seconds() <= 61
    other = await http_api.headers(1)
    assert (await http_api.get("/people", other)).status_code == 200
    assert sim.stats.max_requests_in_window("sim-client-1") == 25
    assert sim.stats["sim-client-1"].rate_limited == 5


async def test_latency_is_added_to_every_request(http_api, sim):
    headers = await http_api.headers()
    sim.faults.latency_s = 0.25
    started = time.perf_counter()
    await asyncio.gather(*(http_api.get("/people", headers) for _ in range(4)))
    elapsed = time.perf_counter() - started
    assert 0.25 <= elapsed < 1.0  # concurrent requests wait side by side
    started = time.perf_counter()
    await http_api.login()
    assert time.perf_counter() - started >= 0.25


async def test_stall_makes_the_client_time_out(http_api, sim):
    headers = await http_api.headers()
    sim.faults.stall_rate = 1.0
    sim.faults.stall_s = 0.5
    with pytest.raises(httpx.ReadTimeout):
        await http_api.client.get(http_api.API + "/people", headers=headers, timeout=0.1)
    sim.faults.stall_rate = 0.0
    assert (await http_api.get("/people", headers)).status_code == 200


async def test_control_only_when_enabled_over_http():
    sim = Simulator(companies=1)
    async with (
        SimulatorServer(sim, control=True) as server,
        httpx.AsyncClient(base_url=server.base_url) as c,
    ):
        assert (await c.post("/_sim/faults", json={"latency_s": 0.01})).status_code == 200
        assert sim.faults.latency_s == 0.01
    async with SimulatorServer(sim) as server, httpx.AsyncClient(base_url=server.base_url) as c:
        assert (await c.post("/_sim/faults", json={"latency_s": 0.02})).status_code == 404
    assert sim.faults.latency_s == 0.01


def test_region_env_lines():
    sim = Simulator(companies=2)
    lines = region_env_lines(sim, "http://127.0.0.1:8900", ["nashville", "gulf-coast"])
    assert lines == [
        "BREEZEWAY_API_BASE_URL=http://127.0.0.1:8900",
        "BREEZEWAY_REGIONS__NASHVILLE__CLIENT_ID=sim-client-1",
        "BREEZEWAY_REGIONS__NASHVILLE__CLIENT_SECRET=sim-secret-1-not-real",
        "BREEZEWAY_REGIONS__NASHVILLE__COMPANY_ID=1001",
        "BREEZEWAY_REGIONS__GULF_COAST__CLIENT_ID=sim-client-2",
        "BREEZEWAY_REGIONS__GULF_COAST__CLIENT_SECRET=sim-secret-2-not-real",
        "BREEZEWAY_REGIONS__GULF_COAST__COMPANY_ID=1002",
    ]
    with pytest.raises(ValueError):
        region_env_lines(sim, "http://x", ["a", "b", "c"])


async def test_simulate_command_serves_prints_credentials_and_stops_on_sigint():
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "breezeway_sim.cli",
        "--port",
        "0",
        "--companies",
        "2",
        "--env",
        "--regions",
        "nashville,austin",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(20):
            while not lines or not lines[-1].startswith("BREEZEWAY_REGIONS__AUSTIN__COMPANY_ID"):
                line = await proc.stdout.readline()
                assert line, (lines, await proc.stderr.read())
                lines.append(line.decode().rstrip("\n"))
        text = "\n".join(lines)
        assert "client_id=sim-client-1 client_secret=sim-secret-1-not-real" in text
        assert "company_id=1002" in text
        base = next(line for line in lines if line.startswith("BREEZEWAY_API_BASE_URL="))
        url = base.split("=", 1)[1]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        assert "BREEZEWAY_REGIONS__NASHVILLE__CLIENT_SECRET=sim-secret-1-not-real" in lines
        async with httpx.AsyncClient(base_url=url) as client:
            answer = await client.post(
                "/public/auth/v1/",
                json={"client_id": "sim-client-2", "client_secret": "sim-secret-2-not-real"},
            )
            assert "access_token" in answer.json()
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
