"""API faults: 5xx bursts, 429 storms, timeouts, a revoked token, disabled credentials.

Each run ends with the right status and message, its alerts reach ``alerts.log``
(``report_batch``, as the daemon calls it after a batch), and no row stays ``running``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

from breezeway_daemon.alerts import report_batch
from breezeway_daemon.config import Settings
from breezeway_daemon.entities import ENTITY_NAMES
from breezeway_daemon.errors import ErrorKind
from breezeway_daemon.sync import EntitySync, RunResult, SyncRequest, run_batch
from breezeway_sim import Faults, Simulator, Stats

from support.groundtruth import differences
from support.reliability import SCALE, RelEnv, served
from support.runs import running_rows

REGION = "region_1"
# Tasks in pages of 4, two properties at a time: a fault armed after the first committed
# batch meets requests still to come.
SLOW_TASKS = {"page_size": 4, "task_fetch_concurrency": 2}


class BurstFaults(Faults):
    """``sim.faults`` whose ``error_rate`` is 1 while a burst of consecutive 5xx lasts."""

    stats: Stats
    burst_end: int = 0  # the total of injected 5xx answers at which the burst ends

    @property  # type: ignore[override]
    def error_rate(self) -> float:
        injected = sum(c.server_errors for c in self.stats.clients.values())
        return 1.0 if injected < self.burst_end else self._error_rate

    @error_rate.setter
    def error_rate(self, value: float) -> None:
        self._error_rate = value

    def burst_5xx(self, count: int) -> None:
        """The next ``count`` data requests (of any credential) answer 500/502/503/504."""
        self.burst_end = sum(c.server_errors for c in self.stats.clients.values()) + count


def _burst_faults(sim: Simulator) -> BurstFaults:
    faults = BurstFaults()
    faults.stats = sim.stats
    sim.faults = faults
    return faults


def _client(env: RelEnv, region: str = REGION) -> Any:
    return env.sim.stats.client(env.settings.regions[region].client_id)


async def _alerts_after(env: RelEnv, results: list[RunResult]) -> list[str]:
    """Report a batch as the daemon does; the subjects in alerts.log."""
    await report_batch(env.alerts, "Hourly ETL", results)
    return [alert.subject for alert in env.alerts_log()]


async def _row(pool: asyncpg.Pool, run_id: int | None) -> asyncpg.Record:
    return await pool.fetchrow("SELECT * FROM breezeway.etl_sync_log WHERE id = $1", run_id)


def _by_entity(results: list[RunResult], region: str = REGION) -> dict[str, RunResult]:
    return {r.entity: r for r in results if r.region == region}


# --- 5xx --------------------------------------------------------------------------------
async def test_a_5xx_burst_is_retried_and_the_run_succeeds(rel_env: RelEnv) -> None:
    env = rel_env
    faults = _burst_faults(env.sim)
    assert (await EntitySync(env.ctx, SyncRequest(REGION, "properties")).run()).status == "success"
    # Three 5xx in a row, against five attempts a request: every request gets through.
    env.reconfigure(http_max_attempts=5, http_retry_budget_s=60, **SLOW_TASKS)
    env.sim.faults.latency_s = 0.01
    armed: list[bool] = []

    def burst_after_first_batch(*_: Any) -> None:
        if not armed:
            armed.append(True)
            faults.burst_5xx(3)

    before = _client(env).data_requests
    result = await EntitySync(
        env.progress(burst_after_first_batch), SyncRequest(REGION, "tasks")
    ).run()
    assert armed
    assert result.status == "success", result.error
    assert _client(env).server_errors == 3
    # Each failed attempt was a call of the run, and repeated.
    assert result.counts.api_calls_made == _client(env).data_requests - before
    row = await _row(env.pool, result.run_id)
    assert (row["sync_status"], row["api_calls_made"]) == ("success", result.counts.api_calls_made)
    assert await differences(env.pool, env.sim, {REGION: env.company(REGION)},
                             ("properties", "tasks")) == []  # fmt: skip
    assert [a.subject for a in env.alerts_log()] == []
    await env.alerts.run_finished(result)
    assert not any("FAILURE" in s for s in await _alerts_after(env, [result]))
    assert await running_rows(env.pool) == []


async def test_5xx_beyond_the_attempts_fail_the_runs_with_the_cause_and_alert(
    rel_env: RelEnv,
) -> None:
    env = rel_env
    env.sim.faults.error_rate = 1.0
    attempts = env.settings.http_max_attempts
    results = await run_batch(env.ctx, [REGION], ENTITY_NAMES)
    by = _by_entity(results)
    assert {r.status for r in results} == {"failed"}
    for entity in ("properties", "people", "supplies", "tags"):
        r = by[entity]
        assert r.error_kind is ErrorKind.API, r.error
        assert f"after {attempts} attempts" in (r.error or ""), r.error
        assert "server error 50" in (r.error or "") and "HTTP 50" in (r.error or ""), r.error
        # Every attempt was made, none more: one listing request, ``attempts`` times.
        assert r.counts.api_calls_made == attempts
        row = await _row(env.pool, r.run_id)
        assert (row["sync_status"], row["error_message"]) == ("failed", r.error)
    assert by["tasks"].error == by["reservations"].error == "skipped: properties failed"
    assert _client(env).server_errors == 4 * attempts
    subjects = await _alerts_after(env, results)
    assert "📊 Hourly ETL Summary: 7 failures" in subjects
    assert "🚨 ETL FAILURE: region_1/properties" in subjects
    assert await running_rows(env.pool) == []


# --- 429 --------------------------------------------------------------------------------
async def test_a_429_storm_is_waited_out_without_provoking_more(rel_env: RelEnv) -> None:
    env = rel_env
    assert (await EntitySync(env.ctx, SyncRequest(REGION, "properties")).run()).status == "success"
    env.reconfigure(http_retry_budget_s=60, **SLOW_TASKS)
    env.sim.faults.latency_s = 0.01
    armed: list[bool] = []

    def storm_after_first_batch(*_: Any) -> None:
        if not armed:
            armed.append(True)
            # Every data request of every credential answers 429 for the next 2 seconds.
            env.sim.faults.burst_429(seconds=2)

    result = await EntitySync(
        env.progress(storm_after_first_batch), SyncRequest(REGION, "tasks")
    ).run()
    assert armed
    assert result.status == "success", result.error
    limited = _client(env).rate_limited
    # Only the requests already on their way met the storm; every other request of the
    # credential waited for its end instead of provoking another 429.
    assert 1 <= limited <= env.settings.max_in_flight_per_credential, limited
    assert await differences(env.pool, env.sim, {REGION: env.company(REGION)},
                             ("properties", "tasks")) == []  # fmt: skip
    assert await running_rows(env.pool) == []


# --- timeouts ---------------------------------------------------------------------------
async def test_latency_beyond_the_http_timeout_is_retried_then_fails_the_run(
    clean_db: asyncpg.Pool, base_settings: Settings, tmp_path: Path
) -> None:
    sim = Simulator(companies=1, scale=SCALE, seed=41)
    async with served(base_settings, sim, tmp_path, http_timeout_s=0.5, http_max_attempts=2) as env:
        assert (await EntitySync(env.ctx, SyncRequest(REGION, "people")).run()).status == "success"
        env.sim.faults.latency_s = 1.5  # three times the timeout
        started = env.sim.now()
        result = await EntitySync(env.ctx, SyncRequest(REGION, "people")).run()
        elapsed = (env.sim.now() - started).total_seconds()
        assert result.status == "failed"
        assert result.error_kind is ErrorKind.API
        assert "timed out after 2 attempts" in (result.error or ""), result.error
        assert result.counts.api_calls_made == 2
        # Two timeouts and one backoff (at most 1 s), no sleep after the last attempt.
        assert elapsed < 2 * 0.5 + 1 + 1.5, elapsed
        row = await _row(env.pool, result.run_id)
        assert (row["sync_status"], row["error_message"]) == ("failed", result.error)
        subjects = await _alerts_after(env, [result])
        # One failure is reported as itself (folded, then delivered), not as a summary.
        assert subjects == ["🚨 ETL FAILURE: region_1/people"] * 2, subjects
        assert await running_rows(env.pool) == []


# --- tokens -----------------------------------------------------------------------------
async def test_a_token_revoked_mid_run_is_renewed_once_and_the_run_succeeds(
    rel_env: RelEnv,
) -> None:
    env = rel_env
    env.sim.faults.auth_rate_limit_per_minute = None  # a second login within the minute
    assert (await EntitySync(env.ctx, SyncRequest(REGION, "properties")).run()).status == "success"
    revoked: list[bool] = []

    def revoke_after_first_batch(*_: Any) -> None:
        if not revoked:
            revoked.append(True)
            env.sim.revoke_tokens(env.company(REGION))

    env.reconfigure(**SLOW_TASKS)
    env.sim.faults.latency_s = 0.01
    result = await EntitySync(
        env.progress(revoke_after_first_batch), SyncRequest(REGION, "tasks")
    ).run()
    assert revoked
    assert result.status == "success", result.error
    client = _client(env)
    assert client.unauthorized >= 1
    # One renewal for every request that met the 401 (the refresh token was revoked too).
    assert client.logins == 2
    tokens = await env.pool.fetchrow(
        "SELECT token_generation_count, last_error FROM breezeway.api_tokens "
        "WHERE region_code = $1",
        REGION,
    )
    assert (tokens["token_generation_count"], tokens["last_error"]) == (2, None)
    assert await differences(env.pool, env.sim, {REGION: env.company(REGION)},
                             ("properties", "tasks")) == []  # fmt: skip
    assert await running_rows(env.pool) == []


async def test_disabled_credentials_fail_the_region_once_with_a_token_alert(
    rel_env: RelEnv,
) -> None:
    env = rel_env
    regions = list(env.regions)
    first = await run_batch(env.ctx, regions, ENTITY_NAMES)
    assert {r.status for r in first} == {"success"}
    env.sim.faults.auth_rate_limit_per_minute = None  # the refresh is not rate limited
    env.sim.disable_client(env.company(REGION))
    client = _client(env)
    auth_before, data_before = client.auth_requests, client.data_requests

    results = await run_batch(env.ctx, regions, ENTITY_NAMES)
    by = _by_entity(results)
    for entity in ("properties", "people", "supplies", "tags"):
        r = by[entity]
        assert (r.status, r.error_kind) == ("failed", ErrorKind.TOKEN), (entity, r.error)
        assert "inactive client" in (r.error or ""), r.error
        row = await _row(env.pool, r.run_id)
        assert (row["sync_status"], row["error_message"]) == ("failed", r.error)
    assert by["tasks"].error == "skipped: properties failed"
    assert [r.status for r in results if r.region != REGION] == ["success"] * len(ENTITY_NAMES)
    # One refresh answered "inactive client"; no login, no loop; each run one data request.
    assert client.auth_requests - auth_before == 1
    assert client.data_requests - data_before <= 4
    last_error = await env.pool.fetchval(
        "SELECT last_error FROM breezeway.api_tokens WHERE region_code = $1", REGION
    )
    assert last_error and "inactive client" in last_error
    subjects = await _alerts_after(env, results)
    assert "🚨 ETL TOKEN FAILURE: region_1" in subjects, subjects
    assert "📊 Hourly ETL Summary: 7 failures" in subjects, subjects
    assert not any("region_2" in s for s in subjects)

    # The next batch does not ask the API again either: the rejection is remembered.
    again = await run_batch(env.ctx, [REGION], ENTITY_NAMES)
    assert {r.status for r in again} == {"failed"}
    assert client.auth_requests - auth_before == 1
    assert await running_rows(env.pool) == []
