"""Which properties an incremental task run lists: busy ones every run, quiet ones every Nth.

The plan is made from what the database already holds (no extra API call); what makes a
property busy, when a quiet one's slot comes, and how fresh that keeps it: README, "How it
syncs" (the task polling plan).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from breezeway_daemon.config import Settings

__all__ = ["PollPlan", "plan_task_polls"]

BUSY_UPDATE_HOURS = 24

_RUNS_SINCE_FULL = """
SELECT sync_started_at, sync_mode FROM breezeway.etl_sync_log
WHERE region_code = $1 AND entity_type = 'tasks' AND sync_status = 'success'
  AND sync_mode IN ('full', 'incremental')
  AND sync_started_at >= (
      SELECT max(sync_started_at) FROM breezeway.etl_sync_log
      WHERE region_code = $1 AND entity_type = 'tasks' AND sync_status = 'success'
        AND sync_mode = 'full')
ORDER BY sync_started_at
"""

_PROPERTIES = """
SELECT p.id, (
    p.changed_at >= $2
    OR (p.status = 'active' AND (
        EXISTS (
            SELECT 1 FROM breezeway.reservations r
            WHERE r.region_code = p.region_code AND r.property_id = p.id
              AND r.deleted_at IS NULL
              AND (r.changed_at >= $2 OR r.checkin_date BETWEEN $3 AND $4
                   OR r.checkout_date BETWEEN $3 AND $4))
        OR EXISTS (
            SELECT 1 FROM breezeway.tasks t
            WHERE t.region_code = p.region_code AND t.property_id = p.id
              AND t.deleted_at IS NULL
              AND (t.updated_at >= $5
                   OR (t.status_stage IS DISTINCT FROM 'finished'
                       AND t.scheduled_date BETWEEN $3 AND $4)))))
) AS busy
FROM breezeway.properties p
WHERE p.region_code = $1 AND p.deleted_at IS NULL
ORDER BY p.id
"""


@dataclass(frozen=True)
class PollPlan:
    """The properties one task run lists, and from when the quiet ones are listed."""

    busy: list[int]
    due: list[int]
    """Quiet properties whose slot is this run."""
    skipped: list[int]
    """Quiet properties left to a later run."""
    quiet_since: datetime
    """Start of the last full task run: the quiet ones' listing reaches back to it."""
    slot: int


async def plan_task_polls(
    pool: asyncpg.Pool, region: str, settings: Settings, started_at: datetime
) -> PollPlan | None:
    """The plan of a region's incremental task run starting at ``started_at`` (the database's
    clock), or None: list every property."""
    every = settings.task_quiet_poll_every
    if every <= 1:
        return None
    runs = await pool.fetch(_RUNS_SINCE_FULL, region)
    if not runs:
        return None
    full_started = runs[0]["sync_started_at"]
    previous_started = runs[-1]["sync_started_at"]
    slot = len(runs) % every  # this run is number len(runs) after the full one
    today = started_at.date()
    rows = await pool.fetch(
        _PROPERTIES,
        region,
        previous_started,
        today - timedelta(days=1),
        today + timedelta(days=settings.task_busy_days),
        started_at - timedelta(hours=BUSY_UPDATE_HOURS),
    )
    busy = [row["id"] for row in rows if row["busy"]]
    quiet = [row["id"] for row in rows if not row["busy"]]
    return PollPlan(
        busy=busy,
        due=[pid for pid in quiet if pid % every == slot],
        skipped=[pid for pid in quiet if pid % every != slot],
        quiet_since=full_started,
        slot=slot,
    )
