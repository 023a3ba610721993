"""The API's minute survives a restart: a daemon SIGKILLed in the middle of a batch and
restarted at once knows what the credential spent in the current minute (its
reservations in ``api_request_reservations``) and provokes no 429 from the simulator,
whose real limit (200 requests per rolling minute) is on."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import asyncpg
import pytest

from breezeway_daemon.config import Settings
from breezeway_sim import Scale, Simulator, SimulatorServer

from support import daemon
from support.daemon import DaemonEnv, NotifySocket
from support.simenv import settings_for

SCALE = Scale(properties=150, reservations_per_property=0, tasks_per_property=1, people=1,
              supplies=1, tags=1)  # fmt: skip
KILL_AFTER = 120  # data requests: well into the minute, short of its limit


@pytest.mark.timeout(240)
async def test_a_daemon_killed_mid_batch_and_restarted_at_once_provokes_no_429(
    clean_db: asyncpg.Pool,
    base_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(daemon, "WAIT_S", 150.0)  # the batch waits out most of a minute
    sim = Simulator(companies=1, scale=SCALE, seed=17)
    assert sim.faults.data_rate_limit_per_minute == 200
    async with SimulatorServer(sim, port=0) as server:
        settings = settings_for(base_settings, sim, server.base_url, state_dir=tmp_path)
        env = DaemonEnv(sim, server, settings, NotifySocket(tmp_path / "notify.sock"),
                        tmp_path / "breezeway.env")  # fmt: skip
        stats = sim.stats.client(sim.companies[0].client_id)
        reached = asyncio.Event()
        admit = sim.data_limiter.admit

        def admit_counting(client_id: str, limit: int | None) -> float | None:
            if stats.data_requests >= KILL_AFTER:
                reached.set()
            return admit(client_id, limit)

        sim.data_limiter.admit = admit_counting  # type: ignore[method-assign]
        try:
            first = await env.start(requests_per_minute=200, hourly_entities="properties,tasks",
                                    max_in_flight_per_credential=8)  # fmt: skip
            first.signal(signal.SIGUSR1)
            async with asyncio.timeout(30):
                await reached.wait()
            await first.kill()
            killed_at = stats.data_requests

            second = await env.start()
            second.signal(signal.SIGUSR1)
            finished = second.events[await second.wait_event("batch_finished")]
        finally:
            await env.close()
    # The batch needed more than the minute allows: the restarted daemon waited for it.
    assert killed_at >= KILL_AFTER and stats.data_requests > 200
    assert stats.rate_limited == 0
    assert finished["failed"] == 0, finished
