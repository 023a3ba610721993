"""Alert history in SQL (``alert_history``, ``alert_listing_sizes``), shared by every
process; while the database cannot answer, this process's memory stands in for it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import asyncpg
import structlog

from breezeway_daemon.alerts.kinds import FAILURE_KINDS, AlertEntry, AlertKey, AlertKind, MailStatus
from breezeway_daemon.config import Settings
from breezeway_daemon.errors import describe
from breezeway_daemon.redact import configured_secrets, scrub
from breezeway_daemon.sync import RunResult

log = structlog.get_logger(__name__)

T = TypeVar("T")

DB_RETRY_AFTER_S = 30.0  # after a failed database call, use memory for this long


class AlertHistory:
    """What was alerted and mailed, when; and each pair's last full listing size."""

    def __init__(self, pool: asyncpg.Pool | None) -> None:
        self.pool = pool
        self._db_down_until = 0.0
        # Stand-ins for the tables while the database is unreachable.
        self._mailed: dict[AlertKey, tuple[datetime, int | None]] = {}
        self._open: dict[tuple[str, str], datetime] = {}
        self._listing_sizes: dict[tuple[str, str], int] = {}

    async def _db(
        self, settings: Settings, what: str, call: Callable[[asyncpg.Pool], Awaitable[T]]
    ) -> T | None:
        """``call(pool)`` bounded in time; None when the database cannot answer."""
        loop = asyncio.get_running_loop()
        if self.pool is None or loop.time() < self._db_down_until:
            return None
        try:
            return await asyncio.wait_for(call(self.pool), settings.db_connect_timeout_s)
        except Exception as err:  # noqa: BLE001 - memory stands in for the history
            self._db_down_until = loop.time() + DB_RETRY_AFTER_S
            error = scrub(describe(err), configured_secrets(settings))
            log.warning("alert_history_unavailable", what=what, error=error)
            return None

    async def last_mailed(
        self, settings: Settings, entries: Sequence[AlertEntry]
    ) -> dict[AlertKey, datetime | None]:
        """For each entry's key: when it was last mailed within the quiet period, else None.

        A run's own alert does not count for the run's entry (a batch summary listing it).
        """
        hours = settings.alert_quiet_hours
        result: dict[AlertKey, datetime | None] = {entry.key: None for entry in entries}
        if hours <= 0 or not entries:
            return result
        rows = await self._db(
            settings,
            "quiet_period",
            lambda pool: pool.fetch(
                """
                SELECT k.kind, k.region, k.entity, (
                    SELECT max(h.mailed_at) FROM breezeway.alert_history h
                    WHERE h.kind = k.kind AND h.region_code = k.region
                      AND h.entity_type = k.entity
                      AND h.mailed_at > now() - $4::float8 * interval '1 hour'
                      AND (k.run_id IS NULL OR h.run_id IS DISTINCT FROM k.run_id)
                ) AS mailed_at
                FROM unnest($1::text[], $2::text[], $3::text[], $5::bigint[])
                    AS k(kind, region, entity, run_id)
                """,
                [entry.kind for entry in entries],
                [entry.region for entry in entries],
                [entry.entity for entry in entries],
                hours,
                [entry.run_id for entry in entries],
            ),
        )
        if rows is not None:
            for row in rows:
                key = (AlertKind(row["kind"]), row["region"], row["entity"])
                if row["mailed_at"] is not None:
                    result[key] = max(filter(None, (result[key], row["mailed_at"])))
            return result
        horizon = datetime.now(UTC) - timedelta(hours=hours)
        for entry in entries:
            mailed = self._mailed.get(entry.key)
            own_run = entry.run_id is not None and mailed is not None and mailed[1] == entry.run_id
            if mailed and mailed[0] > horizon and not own_run:
                result[entry.key] = mailed[0]
        return result

    async def record(
        self, settings: Settings, entries: Sequence[AlertEntry], status: MailStatus
    ) -> None:
        """Insert the entries' rows (setting ``row_id``), or update those they have."""
        new = [entry for entry in entries if entry.row_id is None and entry.record]
        old = [entry for entry in entries if entry.row_id is not None]
        secrets = configured_secrets(settings)

        async def write(pool: asyncpg.Pool) -> list[int]:
            ids: list[int] = []
            async with pool.acquire() as conn, conn.transaction():
                if old:
                    await conn.execute(
                        """
                        UPDATE breezeway.alert_history
                        SET mail_status = $2,
                            mailed_at = CASE WHEN $2 = 'sent' THEN now() END
                        WHERE id = ANY($1::bigint[])
                        """,
                        [entry.row_id for entry in old],
                        status,
                    )
                if new:
                    ids = [
                        row["id"]
                        for row in await conn.fetch(
                            """
                            INSERT INTO breezeway.alert_history
                                (kind, region_code, entity_type, run_id, error_kind, subject,
                                 mail_status, mailed_at)
                            SELECT k.kind, k.region, k.entity, k.run_id, k.error_kind, k.subject,
                                   $7, CASE WHEN $7 = 'sent' THEN now() END
                            FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[],
                                        $5::text[], $6::text[])
                                AS k(kind, region, entity, run_id, error_kind, subject)
                            RETURNING id
                            """,
                            [entry.kind for entry in new],
                            [entry.region for entry in new],
                            [entry.entity for entry in new],
                            [entry.run_id for entry in new],
                            [entry.error_kind for entry in new],
                            [scrub(entry.subject, secrets) for entry in new],
                            status,
                        )
                    ]
            return ids

        ids = await self._db(settings, "record", write)
        for entry, row_id in zip(new, ids or [], strict=False):
            entry.row_id = row_id
        if status is MailStatus.SENT:
            now = datetime.now(UTC)
            for entry in entries:
                self._mailed[entry.key] = (now, entry.run_id)

    def raised(self, region: str, entity: str) -> None:
        """Remember that a failure (or stuck-run) alert about the pair was just raised."""
        self._open[(region, entity)] = datetime.now(UTC)

    def recovered(self, region: str, entity: str) -> None:
        self._open.pop((region, entity), None)

    async def alerting_since(self, settings: Settings, region: str, entity: str) -> datetime | None:
        """When the pair's unrecovered failure alert was raised; None when there is none."""
        row = await self._db(
            settings,
            "recovery",
            lambda pool: pool.fetchrow(
                """
                SELECT kind, created_at FROM breezeway.alert_history
                WHERE region_code = $1 AND entity_type = $2 AND kind = ANY($3::text[])
                ORDER BY id DESC LIMIT 1
                """,
                region,
                entity,
                [*FAILURE_KINDS, AlertKind.RECOVERED],
            ),
        )
        remembered = self._open.get((region, entity))
        if row is not None and row["kind"] in FAILURE_KINDS:
            return row["created_at"]
        # Failures raised while the database was down are only in memory; a recovery
        # another process recorded after them wins.
        if remembered is not None and (row is None or remembered > row["created_at"]):
            return remembered
        self.recovered(region, entity)
        return None

    async def swap_listing_size(self, settings: Settings, result: RunResult) -> int | None:
        """Store this full listing's size; return the pair's previous one."""
        pair = (result.region, result.entity)
        size = result.listing_size
        assert size is not None
        remembered = self._listing_sizes.get(pair)
        self._listing_sizes[pair] = size
        row = await self._db(
            settings,
            "listing_size",
            lambda pool: pool.fetchrow(
                """
                WITH previous AS (
                    SELECT listing_size FROM breezeway.alert_listing_sizes
                    WHERE region_code = $1 AND entity_type = $2
                )
                INSERT INTO breezeway.alert_listing_sizes
                    (region_code, entity_type, listing_size, run_id)
                VALUES ($1, $2, $3, $4)
                ON CONFLICT (region_code, entity_type) DO UPDATE
                SET listing_size = excluded.listing_size, run_id = excluded.run_id,
                    recorded_at = now()
                RETURNING (SELECT listing_size FROM previous) AS previous
                """,
                result.region,
                result.entity,
                size,
                result.run_id,
            ),
        )
        if row is not None:
            return row["previous"]
        return remembered
