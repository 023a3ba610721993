"""What the database holds, compared with the simulator's ground truth.

Entity tables by key; child tables (db/children.py) by parent and item id or position,
children of live parents only (a parent marked deleted keeps its children as history, and
the truth has no deleted parents).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from breezeway_daemon.db.children import CHILDREN, ChildSpec
from breezeway_daemon.entities import ENTITY_NAMES
from breezeway_sim import Simulator

# By default the listed entities: task_details' comments are only complete after the daily
# sweep (a comment does not move a task's updated_at); tests/sync/test_details_truth.py.
LISTED = tuple(name for name in ENTITY_NAMES if name != "task_details")
EMBEDDED_TABLES = tuple(spec.table for spec in CHILDREN if spec.source is not None)
DETAIL_TABLES = ("task_comments", "task_requirements")
CHILD_TABLES = (*EMBEDDED_TABLES, *DETAIL_TABLES)
CHILD_SPECS = {spec.table: spec for spec in CHILDREN}


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
            found += difference(f"{region}/{entity}", truth, await stored(pool, region, entity))
    return found


def difference(label: str, truth: dict[Any, Any], db: dict[Any, Any]) -> list[str]:
    """What is missing, extra or different in ``db``, in one line (empty when equal)."""
    missing = set(truth) - set(db)
    extra = set(db) - set(truth)
    changed = [key for key in set(truth) & set(db) if truth[key] != db[key]]
    if not (missing or extra or changed):
        return []
    return [
        f"{label}: {len(missing)} missing {sorted(missing)[:5]}, "
        f"{len(extra)} extra {sorted(extra)[:5]}, {len(changed)} differ {sorted(changed)[:5]}"
    ]


# --- child tables -----------------------------------------------------------------------
def expected_children(sim: Simulator, company_id: int, spec: ChildSpec) -> dict[Any, Any]:
    """The rows a perfect sync holds: (parent id, item id or position) -> the item."""
    if spec.table in DETAIL_TABLES:
        truth = sim.truth(company_id, spec.table)
        if spec.table == "task_requirements":
            return dict(truth)
        return {
            (c["task_id"], cid): {k: v for k, v in c.items() if k != "task_id"}
            for cid, c in truth.items()
        }
    out: dict[Any, Any] = {}
    assert spec.source is not None
    for parent_id, record in sim.truth(company_id, spec.parent).items():
        for position, item in enumerate(record.get(spec.source) or []):
            out[(parent_id, item["id"] if spec.id_column else position)] = item
    return out


async def stored_children(pool: asyncpg.Pool, region: str, spec: ChildSpec) -> dict[Any, Any]:
    """The rows of live parents, keyed like ``expected_children``."""
    key = spec.id_column or "position"
    rows = await pool.fetch(
        f"SELECT c.{spec.parent_column} AS parent, c.{key} AS key, c.raw "
        f"FROM breezeway.{spec.table} c JOIN breezeway.{spec.parent} p "
        f"ON p.region_code = c.region_code AND p.id = c.{spec.parent_column} "
        "WHERE c.region_code = $1 AND p.deleted_at IS NULL",
        region,
    )
    return {(row["parent"], row["key"]): row["raw"] for row in rows}


async def child_differences(
    pool: asyncpg.Pool,
    sim: Simulator,
    regions: dict[str, int],
    tables: tuple[str, ...] = CHILD_TABLES,
) -> list[str]:
    """Every way the child tables differ from the truth; empty when they are equal."""
    found = []
    for region, company_id in regions.items():
        for table in tables:
            spec = CHILD_SPECS[table]
            truth = expected_children(sim, company_id, spec)
            found += difference(
                f"{region}/{table}", truth, await stored_children(pool, region, spec)
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
    """Per entity and child table, how many keys are stored more than once (the primary
    keys say 0)."""
    keys = {table: "region_code, id" for table in ENTITY_TABLES} | {
        "tags": "region_code, tag_type, id"
    }
    for spec in CHILDREN:
        keys[spec.table] = f"region_code, {spec.parent_column}, {spec.id_column or 'position'}"
    found = {}
    for table, key in keys.items():
        found[table] = await pool.fetchval(
            f"SELECT count(*) FROM (SELECT {key} FROM breezeway.{table} "
            f"GROUP BY {key} HAVING count(*) > 1) AS dup"
        )
    return {table: count for table, count in found.items() if count}
