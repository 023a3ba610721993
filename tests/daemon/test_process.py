"""The daemon as systemd runs it: a real process, a NOTIFY_SOCKET, signals, PostgreSQL."""

from __future__ import annotations

import platform
import signal
from pathlib import Path

import asyncpg
import pytest

from support.daemon import DaemonProcess, NotifySocket
from support.groundtruth import differences
from support.simenv import SimEnv


async def running_rows(pool: asyncpg.Pool) -> int:
    return await pool.fetchval(
        "SELECT count(*) FROM breezeway.etl_sync_log WHERE sync_status = 'running'"
    )


async def test_ready_then_watchdog_pings_at_half_the_interval(
    daemon_factory, notify_socket: NotifySocket
) -> None:
    daemon: DaemonProcess = await daemon_factory()
    ready = await notify_socket.wait_for(lambda m: m.get("READY") == "1")
    assert "next hourly" in notify_socket.messages[ready][1].get("STATUS", "")
    if platform.libc_ver()[0] == "glibc":  # socket read buffers stay off the heap (memory.py)
        malloc = daemon.events[await daemon.wait_event("malloc_mmap_threshold")]
        assert malloc["outcome"].startswith("pinned at"), malloc
    first = await notify_socket.wait_for(lambda m: m.get("WATCHDOG") == "1", after=ready)
    second = await notify_socket.wait_for(lambda m: m.get("WATCHDOG") == "1", after=first + 1)
    interval = notify_socket.messages[second][0] - notify_socket.messages[first][0]
    assert 0.7 < interval < 1.6  # WATCHDOG_USEC is 2 s: a ping every second
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait_exit(30) == 0
    await notify_socket.wait_for(lambda m: m.get("STOPPING") == "1")


async def test_batch_on_sigusr1_stores_the_truth(
    daemon_factory, notify_socket: NotifySocket, sim_env: SimEnv, clean_db: asyncpg.Pool
) -> None:
    daemon: DaemonProcess = await daemon_factory(
        hourly_entities="properties,reservations,tasks,people,supplies,tags"
    )
    await daemon.wait_event("daemon_ready")
    daemon.signal(signal.SIGUSR1)
    finished = daemon.events[await daemon.wait_event("batch_finished", kind="hourly")]
    assert finished["failed"] == 0 and finished["runs"] == 12
    assert await differences(clean_db, sim_env.sim, sim_env.regions) == []
    status = await notify_socket.wait_for(lambda m: "last: hourly batch" in m.get("STATUS", ""))
    assert "12 runs, 0 failed" in notify_socket.messages[status][1]["STATUS"]
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait_exit(30) == 0


async def test_sighup_applies_a_valid_change_and_keeps_running_on_an_invalid_one(
    daemon_factory, notify_socket: NotifySocket, sim_env: SimEnv, tmp_path: Path
) -> None:
    daemon: DaemonProcess = await daemon_factory()
    await daemon.wait_event("daemon_ready")
    ready = await notify_socket.wait_for(lambda m: m.get("READY") == "1")

    daemon.env_file.write_text(sim_env.daemon_env_file_text(hourly_cron="17 5 * * *"))
    daemon.signal(signal.SIGHUP)
    reloaded = daemon.events[await daemon.wait_event("config_reloaded")]
    assert reloaded["changed"] == ["hourly_cron"]
    assert reloaded["next_runs"]["hourly"].endswith("05:17:00 UTC")
    reloading = await notify_socket.wait_for(lambda m: m.get("RELOADING") == "1", after=ready + 1)
    assert int(notify_socket.messages[reloading][1]["MONOTONIC_USEC"]) > 0
    await notify_socket.wait_for(lambda m: m.get("READY") == "1", after=reloading)

    daemon.env_file.write_text(sim_env.daemon_env_file_text(hourly_cron="not a cron"))
    daemon.signal(signal.SIGHUP)
    rejected = daemon.events[await daemon.wait_event("config_reload_rejected")]
    assert rejected["error"].startswith("BREEZEWAY_HOURLY_CRON:")
    again = await notify_socket.wait_for(lambda m: m.get("RELOADING") == "1", after=reloading + 1)
    back = await notify_socket.wait_for(lambda m: m.get("READY") == "1", after=again)
    assert "reload rejected" in notify_socket.messages[back][1]["STATUS"]

    # Still running, on the previous configuration.
    daemon.signal(signal.SIGUSR1)
    finished = daemon.events[await daemon.wait_event("batch_finished", kind="hourly")]
    assert finished["failed"] == 0
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait_exit(30) == 0


@pytest.mark.parametrize(
    "grace", ["5", "0"], ids=["stops-between-batches", "cancelled-after-grace"]
)
async def test_sigterm_during_a_sync_exits_cleanly_with_no_running_rows(
    daemon_factory, sim_env: SimEnv, clean_db: asyncpg.Pool, grace: str
) -> None:
    sim_env.sim.faults.latency_s = 0.3
    daemon: DaemonProcess = await daemon_factory(shutdown_grace_s=grace, batch_size="4")
    await daemon.wait_event("daemon_ready")
    daemon.signal(signal.SIGUSR1)
    await daemon.wait_event("run_started", entity="tasks")
    daemon.signal(signal.SIGTERM)
    code = await daemon.wait_exit(float(grace) + 15)
    assert code == 0, daemon.raw_lines[-8:]
    assert await running_rows(clean_db) == 0
    interrupted = await clean_db.fetch(
        "SELECT entity_type, error_message FROM breezeway.etl_sync_log WHERE sync_status = 'failed'"
    )
    assert "tasks" in {r["entity_type"] for r in interrupted}
    # The interrupted runs say so; a dependant (task details) is not started after its parent.
    assert {r["error_message"] for r in interrupted} <= {
        "interrupted by shutdown",
        "skipped: tasks failed",
    }
    # What the interrupted run stored before it stopped stays stored.
    assert await clean_db.fetchval("SELECT count(*) FROM breezeway.properties") > 0


async def test_sigkill_during_a_sync_then_restart_reaps_and_completes(
    daemon_factory, sim_env: SimEnv, clean_db: asyncpg.Pool
) -> None:
    sim_env.sim.faults.latency_s = 0.3
    daemon: DaemonProcess = await daemon_factory()
    await daemon.wait_event("daemon_ready")
    daemon.signal(signal.SIGUSR1)
    await daemon.wait_event("run_started", entity="tasks")
    await daemon.kill()
    assert await running_rows(clean_db) > 0

    sim_env.sim.faults.latency_s = 0.0
    restarted: DaemonProcess = await daemon_factory()
    await restarted.wait_event("daemon_ready")
    assert await running_rows(clean_db) == 0
    reaped = await clean_db.fetch(
        "SELECT error_message FROM breezeway.etl_sync_log WHERE sync_status = 'failed'"
    )
    assert reaped and all("abandoned" in r["error_message"] for r in reaped)
    restarted.signal(signal.SIGUSR1)
    finished = restarted.events[await restarted.wait_event("batch_finished", kind="hourly")]
    assert finished["failed"] == 0
    assert (
        await differences(
            clean_db, sim_env.sim, sim_env.regions, ("properties", "reservations", "tasks")
        )
        == []
    )
    restarted.signal(signal.SIGTERM)
    assert await restarted.wait_exit(30) == 0
