"""The ``webhook_events`` table: events committed before they are acknowledged, and the
worker's queue of pending ones (``processed_at IS NULL``, applied in order of ``id``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from breezeway_daemon import metrics
from breezeway_daemon.errors import DatabaseError, describe

__all__ = ["EventStore", "ReceivedEvent", "StoreUnavailable", "StoredEvent", "add_to_pairs",
           "kind_summary", "region_summary"]  # fmt: skip

OUTCOMES = ("applied", "unchanged", "coalesced", "deleted", "kept", "rejected", "failed")


class StoreUnavailable(Exception):
    """The event could not be committed in time: the receiver answers 5xx."""


@dataclass(frozen=True)
class ReceivedEvent:
    """An accepted delivery, ready to be stored."""

    region: str
    kind: str  # "task" or "property-status"
    entity_id: int
    event_name: str
    updated_at: datetime | None
    body: bytes


@dataclass(frozen=True)
class StoredEvent(ReceivedEvent):
    id: int = 0
    received_at: datetime | None = None


_INSERT = (
    "INSERT INTO breezeway.webhook_events "
    "(region_code, kind, entity_id, event_name, updated_at, body) "
    "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id"
)
_PENDING = (
    "SELECT id, region_code, kind, entity_id, event_name, updated_at, body, received_at "
    "FROM breezeway.webhook_events WHERE processed_at IS NULL ORDER BY id LIMIT $1"
)
_FINISH = (
    "UPDATE breezeway.webhook_events SET processed_at = clock_timestamp(), outcome = $2, "
    "reason = $3 WHERE id = ANY($1::bigint[]) AND processed_at IS NULL"
)


class EventStore:
    """Writes and reads ``webhook_events`` on ``pool``."""

    def __init__(self, pool: asyncpg.Pool, timeout_s: float) -> None:
        self.pool = pool
        self.timeout_s = timeout_s

    async def record(self, event: ReceivedEvent) -> int:
        """Commit ``event`` (one autocommitted INSERT) within ``timeout_s``; its id.

        Raises ``StoreUnavailable`` when the database is unreachable or too slow. An
        INSERT that committed just as the timeout fired is applied like any other:
        applying an event twice changes nothing.
        """
        try:
            async with asyncio.timeout(self.timeout_s):
                return int(
                    await self.pool.fetchval(
                        _INSERT,
                        event.region,
                        event.kind,
                        event.entity_id,
                        event.event_name,
                        event.updated_at,
                        event.body,
                    )
                )
        except TimeoutError:
            raise StoreUnavailable(f"not stored within {self.timeout_s:g} s") from None
        except (DatabaseError, asyncpg.InterfaceError, OSError) as err:
            raise StoreUnavailable(describe(err)) from err

    async def pending(self, limit: int = 500) -> list[StoredEvent]:
        """The oldest pending events, in order of arrival."""
        rows = await self.pool.fetch(_PENDING, limit)
        return [_stored(row) for row in rows]

    async def finish(self, ids: list[int], outcome: str, reason: str | None = None) -> None:
        """Mark events processed with ``outcome`` (one of ``OUTCOMES``)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        if ids:
            await self.pool.execute(_FINISH, ids, outcome, reason)
            metrics.webhook_events_processed(outcome, len(ids))


def _stored(row: Any) -> StoredEvent:
    return StoredEvent(
        region=row["region_code"],
        kind=row["kind"],
        entity_id=row["entity_id"],
        event_name=row["event_name"],
        updated_at=row["updated_at"],
        body=bytes(row["body"]),
        id=row["id"],
        received_at=row["received_at"],
    )


@dataclass
class RegionEvents:
    """What ``status`` shows about one region's webhook events."""

    region: str
    last_event_at: datetime | None
    pending: int
    failed_24h: int
    rejected_24h: int


_SUMMARY = """
    SELECT region_code, kind, max(received_at) AS last_event_at,
           count(*) FILTER (WHERE processed_at IS NULL) AS pending,
           count(*) FILTER (WHERE outcome = 'failed'
                            AND received_at > now() - interval '24 hours') AS failed,
           count(*) FILTER (WHERE outcome = 'rejected'
                            AND received_at > now() - interval '24 hours') AS rejected
    FROM breezeway.webhook_events WHERE region_code = ANY($1::text[])
    GROUP BY region_code, kind
"""

ENTITY_OF_KIND = {"task": "tasks", "property-status": "properties"}
"""The table each kind of event changes: where ``status --json`` shows that kind."""


async def kind_summary(
    pool: asyncpg.Pool, regions: list[str]
) -> dict[tuple[str, str], RegionEvents]:
    """Per region and kind (both kinds of every region, none missing): the last event's
    arrival, how many are pending, failed and rejected."""
    rows = await pool.fetch(_SUMMARY, regions)
    found = {
        (row["region_code"], row["kind"]): RegionEvents(
            row["region_code"], row["last_event_at"], row["pending"], row["failed"], row["rejected"]
        )
        for row in rows
    }
    return {
        (region, kind): found.get((region, kind)) or RegionEvents(region, None, 0, 0, 0)
        for region in regions
        for kind in ENTITY_OF_KIND
    }


async def region_summary(pool: asyncpg.Pool, regions: list[str]) -> dict[str, RegionEvents]:
    """Per region: when the last event arrived, how many are pending, failed and rejected."""
    summary = {region: RegionEvents(region, None, 0, 0, 0) for region in regions}
    for (region, _), events in (await kind_summary(pool, regions)).items():
        total = summary[region]
        if events.last_event_at is not None and (
            total.last_event_at is None or events.last_event_at > total.last_event_at
        ):
            total.last_event_at = events.last_event_at
        total.pending += events.pending
        total.failed_24h += events.failed_24h
        total.rejected_24h += events.rejected_24h
    return summary


async def add_to_pairs(pool: asyncpg.Pool, pairs: list[dict[str, Any]]) -> None:
    """``status --json``: a ``webhooks`` key on each region's ``tasks`` pair (task events)
    and ``properties`` pair (property-status events): ``last_event_at``, ``pending``,
    ``failed_24h``, ``rejected_24h``. Only adds keys; other pairs are left as they are."""
    regions = sorted({pair["region"] for pair in pairs})
    for (region, kind), events in (await kind_summary(pool, regions)).items():
        for pair in pairs:
            if pair["region"] == region and pair["entity"] == ENTITY_OF_KIND[kind]:
                last = events.last_event_at
                pair["webhooks"] = {
                    "kind": kind,
                    "last_event_at": last.isoformat() if last is not None else None,
                    "pending": events.pending,
                    "failed_24h": events.failed_24h,
                    "rejected_24h": events.rejected_24h,
                }


def render_summary(summary: dict[str, RegionEvents], now: datetime) -> str:
    """The ``status`` section: per region, the last event's arrival and the queue."""
    lines = [
        f"{'webhooks':<16} {'last event (UTC)':<20} {'ago':>7} {'pending':>8} {'failed24h':>9} "
        f"{'rejected24h':>11}"
    ]
    for region, events in summary.items():
        last = events.last_event_at
        when = last.strftime("%Y-%m-%d %H:%M") if last else "never"
        ago = f"{(now - last).total_seconds() / 3600:.1f}h" if last else "-"
        lines.append(
            f"{region:<16} {when:<20} {ago:>7} {events.pending:>8} {events.failed_24h:>9} "
            f"{events.rejected_24h:>11}"
        )
    return "\n".join(lines)
