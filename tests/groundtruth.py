"""Comparing the database with the simulator's ground truth."""

from __future__ import annotations

from typing import Any

import asyncpg

from breezeway_daemon.entities import ENTITY_NAMES
from breezeway_sim import Simulator


async def stored(pool: asyncpg.Pool, region: str, entity: str) -> dict[Any, Any]:
    """Live (not deleted) records of a region: key -> raw JSON, keyed like the truth."""
    if entity == "tags":
        rows = await pool.fetch(
            "SELECT tag_type, id, raw FROM breezeway.tags WHERE region_code = $1 AND deleted_at IS NULL",
            region,
        )
        return {(row["tag_type"], row["id"]): row["raw"] for row in rows}
    rows = await pool.fetch(
        f"SELECT id, raw FROM breezeway.{entity} WHERE region_code = $1 AND deleted_at IS NULL",
        region,
    )
    return {row["id"]: row["raw"] for row in rows}


async def differences(
    pool: asyncpg.Pool, sim: Simulator, regions: dict[str, int], entities: tuple[str, ...] = ENTITY_NAMES
) -> list[str]:
    """Every way the database differs from the truth; empty when they are equal."""
    found = []
    for region, company_id in regions.items():
        for entity in entities:
            truth = sim.truth(company_id, entity)
            db = await stored(pool, region, entity)
            missing = set(truth) - set(db)
            extra = set(db) - set(truth)
            changed = [key for key in set(truth) & set(db) if truth[key] != db[key]]
            if missing or extra or changed:
                found.append(
                    f"{region}/{entity}: {len(missing)} missing {sorted(missing)[:5]}, "
                    f"{len(extra)} extra {sorted(extra)[:5]}, {len(changed)} differ {sorted(changed)[:5]}"
                )
    return found
