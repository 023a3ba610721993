"""The watchdog: no run stays ``running`` when nothing runs it anymore.

The daemon sweeps every minute and once at start; ``breezeway-daemon watchdog`` sweeps once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

import asyncpg
import structlog

from breezeway_daemon.config import Settings
from breezeway_daemon.db.runs import HOST, StuckRun, fail_running

log = structlog.get_logger(__name__)


class CancellableRun(Protocol):
    def cancel(self, reason: str) -> None: ...

    @property
    def session_pid(self) -> int | None:
        """The database session that holds the run's lock."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def _why_stuck(
    row: Mapping[str, Any], now: datetime, settings: Settings, active: Mapping[int, CancellableRun]
) -> tuple[str, bool] | None:
    """Why the row is stuck, and whether that is only its process seeming gone (to be
    checked against the pair's run lock); None when it is not."""
    reason = _why_abandoned(row, active)
    if reason is not None:
        return reason, True
    owner = f"{row['owner_host'] or '?'}:{row['owner_pid'] or '?'}"
    if now - row["sync_started_at"] > settings.max_run_time:
        return (
            f"exceeded the maximum run time of {settings.max_run_minutes:g} minutes "
            f"(owner {owner})",
            False,
        )
    heartbeat = row["heartbeat_at"] or row["sync_started_at"]
    if now - heartbeat > settings.stale_after:
        minutes = (now - heartbeat).total_seconds() / 60
        return f"stuck: no heartbeat for {minutes:.0f} minutes (owner {owner})", False
    return None


def _why_abandoned(row: Mapping[str, Any], active: Mapping[int, CancellableRun]) -> str | None:
    owner = f"{row['owner_host'] or '?'}:{row['owner_pid'] or '?'}"
    if row["owner_host"] == HOST and row["owner_pid"] is not None:
        if row["owner_pid"] == os.getpid():
            if row["id"] not in active:
                return (
                    f"abandoned: process {owner} no longer runs it "
                    "(its end could not be recorded, or the pid was reused)"
                )
        elif not pid_alive(row["owner_pid"]):
            return f"abandoned: process {owner} is gone"
    return None


def own_run_sessions(active: Mapping[int, CancellableRun]) -> list[int]:
    """The database sessions of this process's runs (their locks prove nothing)."""
    return [pid for run in active.values() if (pid := run.session_pid) is not None]


async def sweep(
    pool: asyncpg.Pool, settings: Settings, active: Mapping[int, CancellableRun] | None = None
) -> list[StuckRun]:
    """Fail every stuck run; returns them (with the reason) for the stuck-run alert.

    A ``running`` row becomes ``failed``, with a message saying why, when
    - its heartbeat is older than ``stale_run_minutes`` (its process hung or died on another host);
    - its owner is this host and its process is gone (or is this process, which does not know the
      run: a previous process with a reused pid), and no database session holds the pair's run lock
      (``pg_locks``): two containers can share a host name and a pid, and neither may fail the
      other's live run;
    - it has run longer than ``max_run_minutes``; when it runs in this process its task is cancelled
      first.

    Afterwards the runbook's "stuck in running" query finds nothing.
    """
    active = active or {}
    now = await pool.fetchval("SELECT now()")
    rows = await pool.fetch(
        "SELECT id, region_code, entity_type, owner_host, owner_pid, sync_started_at, heartbeat_at "
        "FROM breezeway.etl_sync_log WHERE sync_status = 'running'"
    )
    own_sessions = own_run_sessions(active)
    failed = []
    for row in rows:
        stuck = _why_stuck(row, now, settings, active)
        if stuck is None:
            continue
        reason, if_unlocked = stuck
        # The row first, then the run's task: cancelled first, the run could record its own
        # end before this UPDATE, which would then miss the run (and its stuck-run alert).
        spare = own_sessions if if_unlocked else None
        if await fail_running(pool, reason, run_id=row["id"], own_sessions=spare) == 1:
            local = active.get(row["id"])
            if local is not None:
                local.cancel(reason)  # its result says ``reason`` too
            log.warning(
                "stuck_run_failed", region=row["region_code"], entity=row["entity_type"],
                run_id=row["id"], reason=reason,
            )  # fmt: skip
            failed.append(
                StuckRun(
                    run_id=row["id"],
                    region=row["region_code"],
                    entity=row["entity_type"],
                    owner_host=row["owner_host"],
                    owner_pid=row["owner_pid"],
                    started_at=row["sync_started_at"],
                    heartbeat_at=row["heartbeat_at"],
                    reason=reason,
                )
            )
    return failed
