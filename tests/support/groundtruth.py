"""What the database holds, compared with the simulator's ground truth."""

from __future__ import annotations

from typing import Any

import asyncpg

from breezeway_daemon.entities import ENTITY_NAMES
from breezeway_sim import Simulator
from childtruth import DETAIL_TABLES, child_differences

# By default the listed entities: task_details' comments are only complete after the daily
# sweep (a comment does not move a task's updated_at); tests/sync/test_details_truth.py.
LISTED = tuple(name for name in ENTITY_NAMES if name != "task_details")


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
    pool: asyncpg.Pool,
    sim: Simulator,
    regions: dict[str, int],
    entities: tuple[str, ...] = LISTED,
) -> list[str]:
    """Every way the database differs from the truth; empty when they are equal."""
    found = []
    for region, company_id in regions.items():
        for entity in entities:
            if entity == "task_details":  # no table of its own: its child tables
                found += await child_differences(pool, sim, {region: company_id}, DETAIL_TABLES)
                continue
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


async def live_ids(pool: asyncpg.Pool, region: str, entity: str) -> set[int]:
    """Ids of the region's live (not deleted) records of ``entity``."""
    rows = await pool.fetch(
        f"SELECT id FROM breezeway.{entity} WHERE region_code = $1 AND deleted_at IS NULL", region
    )
    return {row["id"] for row in rows}


async def live_count(pool: asyncpg.Pool, region: str, entity: str) -> int:
    return len(await stored(pool, region, entity))


ENTITY_TABLES = ("properties", "reservations", "tasks", "people", "supplies", "tags")


async def duplicate_keys(pool: asyncpg.Pool) -> dict[str, int]:
    """Per entity table, how many keys are stored more than once (the primary key says 0)."""
    found = {}
    for table in ENTITY_TABLES:
        key = "region_code, tag_type, id" if table == "tags" else "region_code, id"
        found[table] = await pool.fetchval(
            f"SELECT count(*) FROM (SELECT {key} FROM breezeway.{table} "
            f"GROUP BY {key} HAVING count(*) > 1) AS dup"
        )
    return {table: count for table, count in found.items() if count}
