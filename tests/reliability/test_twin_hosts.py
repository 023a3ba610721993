"""Two containers with the same host name and the same pid (PID 1 in each) share one
database: neither calls the other's live run abandoned. The pair's run lock, held by the
other process, proves the run alive whatever host and pid its row names."""

from __future__ import annotations

import os
import signal

import asyncpg

from breezeway_daemon.config import Settings
from breezeway_daemon.db import runs
from breezeway_daemon.db.lease import SHUTDOWN
from breezeway_daemon.watchdog import sweep

from support.daemon import DaemonEnv
from support.runs import dead_pid, lock_holder, running_row

TASKS = ("region_1", "tasks")
PROPERTIES = ("region_1", "properties")


async def statuses(pool: asyncpg.Pool, *ids: int) -> list[str]:
    rows = await pool.fetch(
        "SELECT sync_status FROM breezeway.etl_sync_log WHERE id = ANY($1) ORDER BY id", ids
    )
    return [row["sync_status"] for row in rows]


async def test_the_watchdog_spares_a_twins_live_runs_and_fails_them_once_dead(
    clean_db: asyncpg.Pool, base_settings: Settings
) -> None:
    pool = clean_db
    async with lock_holder(base_settings.dsn(), TASKS, PROPERTIES):
        # The twin's runs name this host and this very pid (PID 1 in both containers),
        # or a pid that does not exist here (it lives in the twin's pid namespace).
        same_pid = await running_row(pool, "tasks", started="1 minute", heartbeat="1 second",
                                     host=runs.HOST, pid=os.getpid())  # fmt: skip
        other_pid = await running_row(pool, "properties", started="1 minute",
                                      heartbeat="1 second", host=runs.HOST, pid=await dead_pid())  # fmt: skip
        assert await sweep(pool, base_settings) == []
        # Nor does this process's shutdown safety net fail them.
        assert await runs.fail_running(
            pool, SHUTDOWN, host=runs.HOST, pid=os.getpid(), own_sessions=[]
        ) == 0  # fmt: skip
        assert await statuses(pool, same_pid, other_pid) == ["running", "running"]
    # The twin is gone: its runs are abandoned now.
    failed = {stuck.run_id: stuck.reason for stuck in await sweep(pool, base_settings)}
    assert set(failed) == {same_pid, other_pid}
    assert all(reason.startswith("abandoned") for reason in failed.values())


async def test_a_daemon_stopping_leaves_its_twins_live_run_running(
    clean_db: asyncpg.Pool, daemon_env: DaemonEnv
) -> None:
    pool = clean_db
    daemon = await daemon_env.start()
    assert daemon.proc is not None
    async with lock_holder(daemon_env.settings.dsn(), TASKS):
        # The twin's run names the daemon's host and pid.
        twin_run = await running_row(pool, "tasks", started="1 minute", heartbeat="1 second",
                                     host=runs.HOST, pid=daemon.proc.pid)  # fmt: skip
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait_exit(30) == 0
        assert await statuses(pool, twin_run) == ["running"]
