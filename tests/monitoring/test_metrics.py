"""``/metrics`` of a real daemon process, checked against what its sync did (etl_sync_log)."""

from __future__ import annotations

import signal

import asyncpg
import httpx
import pytest

from breezeway_daemon.entities import ENTITY_NAMES

from support.monitoring import Scrape, ServedDaemon
from support.simenv import SimEnv

HOURLY = ("properties", "reservations", "tasks")
OUTCOMES = ("new", "updated", "unchanged", "deleted", "rejected")


async def _runs(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM breezeway.etl_sync_log ORDER BY id")


def _last_success(scrape: Scrape, region: str, entity: str) -> float | None:
    return scrape.value(
        "breezeway_last_success_timestamp_seconds", region=region, entity=entity, schedule="hourly"
    )


async def test_a_scrape_after_a_sync_with_one_failing_region_says_what_happened(
    served_daemon, sim_env: SimEnv, clean_db: asyncpg.Pool
) -> None:
    # region_2's secret is wrong: its token fails, its properties run fails, its dependants
    # are failed without starting; region_1 syncs.
    daemon: ServedDaemon = await served_daemon(secrets={"region_2": "wrong-secret-for-tests"})
    daemon.signal(signal.SIGUSR1)
    finished = daemon.events[await daemon.wait_event("batch_finished", kind="hourly")]
    assert finished["runs"] == 8 and finished["failed"] == 4, finished
    # The token alert is the batch's last.
    scrape = await daemon.until_scraped(
        lambda scrape: bool(scrape.samples("breezeway_alerts_total", kind="token"))
    )
    rows = await _runs(clean_db)

    for row in rows:
        region, entity, status = row["region_code"], row["entity_type"], row["sync_status"]
        assert scrape.value("breezeway_runs_total", region=region, entity=entity) == 1
        assert (
            scrape.value("breezeway_runs_total", region=region, entity=entity, outcome=status) == 1
        ), (region, entity, status)
        for outcome in OUTCOMES:
            stored = row[f"records_{outcome}"]
            counted = scrape.value(
                "breezeway_records_total", region=region, entity=entity, outcome=outcome
            )
            assert (counted or 0) == stored, (region, entity, outcome)
    assert {r["sync_status"] for r in rows if r["region_code"] == "region_1"} == {"success"}
    assert {r["sync_status"] for r in rows if r["region_code"] == "region_2"} == {"failed"}
    assert scrape.value("breezeway_records_total", region="region_1", outcome="new") > 0

    # Durations: one observation per run that ran; region_2's dependants never started.
    count, last = "breezeway_run_duration_seconds_count", "breezeway_run_last_duration_seconds"
    assert scrape.value(count, entity="properties") == 2
    assert scrape.value(count, entity="reservations") == scrape.value(count, entity="tasks") == 1
    for entity in HOURLY:
        assert 0 < scrape.value(last, region="region_1", entity=entity) < 60
    assert scrape.value(last, region="region_2", entity="properties") > 0
    assert scrape.value(last, region="region_2", entity="tasks") is None
    assert scrape.value("breezeway_run_started_timestamp_seconds") is None  # none running

    # The last-success gauge: region_1's pairs at their completion time; none for region_2.
    for row in rows:
        gauge = _last_success(scrape, row["region_code"], row["entity_type"])
        if row["region_code"] == "region_1":
            assert gauge == pytest.approx(row["sync_completed_at"].timestamp(), abs=2.0)
        else:
            assert gauge is None

    # The API: every attempt a run counted is in the requests counter, by status class.
    calls = sum(r["api_calls_made"] for r in rows if r["region_code"] == "region_1")
    assert scrape.value("breezeway_api_requests_total", region="region_1") == calls
    assert scrape.value("breezeway_api_requests_total", region="region_1", status_class="2xx") == (
        calls
    )
    assert scrape.value("breezeway_api_requests_total", region="region_2") is None
    assert scrape.value("breezeway_api_rate_limited_total") == 0
    assert scrape.value("breezeway_token_renewals_total", region="region_1", outcome="renewed") == 1
    assert scrape.value("breezeway_token_renewals_total", region="region_2", outcome="failed") >= 1
    assert scrape.value("breezeway_api_pacer_wait_seconds_total", region="region_1") is not None
    assert scrape.value("breezeway_api_rate_limit_per_minute") == 100000

    # The batch, its alerts (no SMTP: "off"; per-run alerts folded into the summary).
    assert scrape.value("breezeway_batches_total", kind="hourly", outcome="ran") == 1
    assert scrape.value("breezeway_alerts_total", kind="summary", outcome="off") == 1
    assert scrape.value("breezeway_alerts_total", kind="failure", outcome="folded") == 4
    assert scrape.value("breezeway_alerts_total", kind="token", outcome="off") == 1

    # The database pool, health, process metrics.
    size = scrape.value("breezeway_db_pool_size")
    assert size is not None and 1 <= size <= scrape.value("breezeway_db_pool_max_size")
    assert scrape.value("breezeway_db_pool_in_use") is not None
    assert scrape.value("breezeway_database_up") == 1
    assert scrape.value("breezeway_scheduler_running") == 1
    assert scrape.value("process_cpu_seconds_total") > 0
    assert scrape.value("process_resident_memory_bytes") > 0

    status, body = await daemon.healthz()
    assert status == 200 and body["status"] == "ok", body

    # A restart reads the last successes from etl_sync_log: the gauge is right at once.
    url = daemon.url
    assert await daemon.stop() == 0
    with pytest.raises(httpx.ConnectError):
        await daemon.get("/healthz")
    again = await served_daemon(http_listen=url.removeprefix("http://"))
    scrape = await again.scrape()
    for row in rows:
        if row["region_code"] == "region_1":
            at = row["sync_completed_at"].timestamp()
            assert _last_success(scrape, "region_1", row["entity_type"]) == pytest.approx(at)
    # Counters start again, at 0 for every pair (so that increase() sees a first failure).
    assert (
        len(scrape.samples("breezeway_runs_total")) == 2 * len(ENTITY_NAMES) * 3
    )  # every pair, 3 outcomes
    assert scrape.value("breezeway_runs_total") == 0


async def test_metrics_and_healthz_are_all_it_serves_and_the_format_is_negotiated(
    served_daemon,
) -> None:
    daemon: ServedDaemon = await served_daemon()
    assert (await daemon.get("/")).status_code == 404
    assert (await daemon.get("/metrics/../../etc/passwd")).status_code == 404
    openmetrics = await daemon.get("/metrics", accept="application/openmetrics-text")
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")
    async with httpx.AsyncClient(base_url=daemon.url) as client:
        assert (await client.post("/metrics")).status_code == 405
