"""``breezeway-daemon status``: the runbook's morning check as one command.

For every enabled region and scheduled entity: the last run's status, the last
success and how long ago, the lag allowed by its schedule (the runbook's 2
hours for hourly entities, 25 for daily ones), failures in the last 24 hours,
and how many live records the table holds. A pair is unhealthy when its last
success is older than its allowed lag (or it never succeeded), or its latest
finished run failed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from breezeway_daemon.config import Settings
from breezeway_daemon.db.runs import RunStatus
from breezeway_daemon.entities import ENTITY_NAMES

HOURLY_LAG = timedelta(hours=2)
DAILY_LAG = timedelta(hours=25)
# task_details has no table of its own: its records are the tasks whose details are stored.
DETAILS_COUNT = (
    "SELECT region_code, count(*) AS n FROM breezeway.task_details_fetches "
    "WHERE gone_at IS NULL AND region_code = ANY($1::text[]) GROUP BY region_code"
)


@dataclass
class PairStatus:
    region: str
    entity: str
    schedule: str
    last_status: str | None
    last_started_at: datetime | None
    last_success_at: datetime | None
    hours_since_success: float | None
    allowed_lag_hours: float
    failures_24h: int
    records: int
    last_error: str | None
    healthy: bool

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("last_started_at", "last_success_at"):
            if data[key] is not None:
                data[key] = data[key].isoformat()
        return data


def scheduled_entities(settings: Settings) -> dict[str, str]:
    """Entity -> ``hourly`` or ``daily`` (hourly wins when both list it)."""
    schedule = {entity: "daily" for entity in settings.daily_entities}
    schedule.update({entity: "hourly" for entity in settings.hourly_entities})
    return {entity: schedule[entity] for entity in ENTITY_NAMES if entity in schedule}


async def collect(pool: asyncpg.Pool, settings: Settings) -> list[PairStatus]:
    regions = list(settings.enabled_regions)
    schedule = scheduled_entities(settings)
    now = await pool.fetchval("SELECT now()")
    runs = await pool.fetch(
        """
        SELECT DISTINCT ON (region_code, entity_type)
               region_code, entity_type, sync_status, sync_started_at, error_message
        FROM breezeway.etl_sync_log
        WHERE region_code = ANY($1::text[])
        ORDER BY region_code, entity_type, (sync_status = 'running'), sync_started_at DESC
        """,
        regions,
    )
    latest = {(r["region_code"], r["entity_type"]): r for r in runs}
    summary = await pool.fetch(
        """
        SELECT region_code, entity_type,
               max(last_successful_sync_at) AS last_success,
               count(*) FILTER (WHERE sync_status = 'failed'
                                AND sync_started_at > now() - interval '24 hours') AS failures
        FROM breezeway.etl_sync_log WHERE region_code = ANY($1::text[])
        GROUP BY region_code, entity_type
        """,
        regions,
    )
    sums = {(r["region_code"], r["entity_type"]): r for r in summary}
    counts: dict[tuple[str, str], int] = {}
    for entity in schedule:
        count_sql = (
            DETAILS_COUNT
            if entity == "task_details"
            else f"SELECT region_code, count(*) AS n FROM breezeway.{entity} "
            "WHERE deleted_at IS NULL AND region_code = ANY($1::text[]) GROUP BY region_code"
        )
        for row in await pool.fetch(count_sql, regions):
            counts[(row["region_code"], entity)] = row["n"]

    statuses = []
    for region in regions:
        for entity, kind in schedule.items():
            last = latest.get((region, entity))
            agg = sums.get((region, entity))
            last_success = agg["last_success"] if agg else None
            lag = HOURLY_LAG if kind == "hourly" else DAILY_LAG
            hours = (now - last_success).total_seconds() / 3600 if last_success else None
            healthy = (
                last_success is not None
                and now - last_success <= lag
                and (last is None or last["sync_status"] != RunStatus.FAILED)
            )
            statuses.append(
                PairStatus(
                    region=region,
                    entity=entity,
                    schedule=kind,
                    last_status=last["sync_status"] if last else None,
                    last_started_at=last["sync_started_at"] if last else None,
                    last_success_at=last_success,
                    hours_since_success=round(hours, 2) if hours is not None else None,
                    allowed_lag_hours=lag.total_seconds() / 3600,
                    failures_24h=agg["failures"] if agg else 0,
                    records=counts.get((region, entity), 0),
                    last_error=last["error_message"]
                    if last and last["sync_status"] == RunStatus.FAILED
                    else None,
                    healthy=healthy,
                )
            )
    return statuses


def render(statuses: list[PairStatus]) -> str:
    header = (
        f"{'region':<16} {'entity':<13} {'last run':<9} {'last success (UTC)':<20} {'ago':>7} "
        f"{'allowed':>7} {'fail24h':>7} {'records':>9}  health"
    )
    lines = [header, "-" * len(header)]
    for s in statuses:
        when = s.last_success_at.strftime("%Y-%m-%d %H:%M") if s.last_success_at else "never"
        ago = f"{s.hours_since_success:.1f}h" if s.hours_since_success is not None else "-"
        health = "ok" if s.healthy else "UNHEALTHY" + (f": {s.last_error}" if s.last_error else "")
        lines.append(
            f"{s.region:<16} {s.entity:<13} {s.last_status or '-':<9} {when:<20} {ago:>7} "
            f"{s.allowed_lag_hours:>6.0f}h {s.failures_24h:>7} {s.records:>9}  {health}"
        )
    unhealthy = sum(not s.healthy for s in statuses)
    lines.append(f"\n{len(statuses)} pairs, {unhealthy} unhealthy")
    return "\n".join(lines)


async def webhooks_section(pool: asyncpg.Pool, settings: Settings) -> str:
    """The webhook table to append to ``render``'s: each region's last event and queue
    (empty when webhooks are not configured)."""
    if settings.webhook_secret is None:
        return ""
    from breezeway_daemon.webhooks.store import region_summary, render_summary

    summary = await region_summary(pool, list(settings.enabled_regions))
    return "\n\n" + render_summary(summary, await pool.fetchval("SELECT now()"))


async def add_webhooks(pool: asyncpg.Pool, settings: Settings, pairs: list[dict[str, Any]]) -> None:
    """The same for ``as_json`` output: a ``webhooks`` key on the pairs webhook events feed
    (nothing when webhooks are not configured)."""
    if settings.webhook_secret is None:
        return
    from breezeway_daemon.webhooks.store import add_to_pairs

    await add_to_pairs(pool, pairs)
