"""SIGKILL of the real daemon (``breezeway-daemon serve``, listener on) between
acknowledging events and applying them loses none.

The kill lands in that window by construction, not by timing: the test holds the
advisory lock that lets one event worker per database apply events, so the daemon's
worker stands by (``webhook_worker_standby``) while its receiver commits and
acknowledges every delivery. After the SIGKILL the lock is released and a new daemon's
worker applies what was left (``webhook_worker_on``); no poll runs in between.
"""

from __future__ import annotations

import asyncpg

from breezeway_daemon.webhooks.worker import WORKER_LOCK

from support.groundtruth import CHILD_SPECS, EMBEDDED_TABLES, child_differences, differences
from support.monitoring import ServedDaemon
from support.simenv import SimEnv
from support.webhooks import SECRET

PENDING = "SELECT count(*) FROM breezeway.webhook_events WHERE processed_at IS NULL"


async def test_sigkill_between_acknowledging_and_applying_loses_no_event(
    synced_env: SimEnv, clean_db: asyncpg.Pool, served_daemon
) -> None:
    sim = synced_env.sim
    sim.rates.update({"properties": {"create": 0, "delete": 0}, "reservations": {"create": 0}})
    sim.rates.update({"tasks": {"change": 0.4, "create": 0.05, "delete": 0.05}})
    holder = await asyncpg.connect(synced_env.settings.dsn())
    try:
        assert await holder.fetchval("SELECT pg_try_advisory_lock($1)", WORKER_LOCK)
        daemon: ServedDaemon = await served_daemon(webhook_secret=SECRET)
        await daemon.wait_event("webhook_worker_standby")
        for company in sim.companies:
            await sim.webhooks.subscribe(company, "task", f"{daemon.url}/webhooks/{SECRET}/task")
        sim.advance(1)
        await sim.webhooks.drain(30)
        delivered = [e for e in sim.webhooks.log if e.outcome == "delivered"]
        assert len(delivered) == len(sim.webhooks.log) > 10  # every event acknowledged
        assert {e.status for e in delivered} == {200}
        assert await clean_db.fetchval(PENDING) == len(delivered)  # none applied
        assert await differences(clean_db, sim, synced_env.regions, ("tasks",)) != []
        runs_before = await clean_db.fetchval("SELECT count(*) FROM breezeway.etl_sync_log")
        await daemon.kill()
        assert daemon.proc is not None and daemon.proc.returncode == -9  # SIGKILL
    finally:
        await holder.close()  # the lock goes with the session

    restarted: ServedDaemon = await served_daemon(webhook_secret=SECRET)
    on = restarted.events[await restarted.wait_event("webhook_worker_on")]
    assert on["pending_applied"] == len(delivered)
    assert await clean_db.fetchval(PENDING) == 0
    assert await clean_db.fetchval("SELECT count(*) FROM breezeway.etl_sync_log") == runs_before
    assert await differences(clean_db, sim, synced_env.regions, ("tasks",)) == []
    task_children = tuple(t for t in EMBEDDED_TABLES if CHILD_SPECS[t].parent == "tasks")
    assert task_children  # the loader's child tables, written from the events as by a poll
    assert await child_differences(clean_db, sim, synced_env.regions, task_children) == []
    assert await restarted.stop() == 0
