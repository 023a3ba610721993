"""Every batch the loader stored (or tried to), as the ``batches`` fixture records them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg


@dataclass
class BatchRecord:
    region: str
    table: str
    ids: list[int]
    run_id: int | None = None
    committed: bool | None = None  # None while in flight
    error: str | None = None
    duplicates: int = 0  # records dropped because a later one had the same key


@dataclass
class Batches:
    """Every batch the loader stored (or tried to), in submission order."""

    batches: list[BatchRecord] = field(default_factory=list)
    before_write: Callable[[asyncpg.Connection, BatchRecord], Any] | None = None
    """Awaited inside the batch's transaction, after its keys were classified."""

    def of(self, table: str) -> list[BatchRecord]:
        return [batch for batch in self.batches if batch.table == table]

    async def visible(self, pool: asyncpg.Pool, batch: BatchRecord) -> int:
        """How many of the batch's records are in the database."""
        return await pool.fetchval(
            f"SELECT count(*) FROM breezeway.{batch.table} "
            "WHERE region_code = $1 AND id = ANY($2::bigint[])",
            batch.region,
            batch.ids,
        )

    async def partially_visible(self, pool: asyncpg.Pool) -> list[str]:
        """Batches of which some, not all, records are in the database, and committed
        batches not wholly in it. Meant for first loads (into empty tables).

        A batch that failed may still be wholly visible: its COMMIT can reach the server
        just before the connection dies, and the client cannot know (nobody can)."""
        wrong = []
        for index, batch in enumerate(self.batches):
            if not batch.ids:
                continue
            present = await self.visible(pool, batch)
            expected = {len(batch.ids)} if batch.committed else {0, len(batch.ids)}
            if present not in expected:
                wrong.append(
                    f"batch {index} ({batch.region}/{batch.table}, {len(batch.ids)} records, "
                    f"committed={batch.committed}): {present} visible"
                )
        return wrong
