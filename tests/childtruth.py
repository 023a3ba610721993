"""Comparing the child tables with the simulator's ground truth.

Children of live parents only: a parent marked deleted keeps its children (history), and
the truth has no deleted parents.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from breezeway_daemon.db.children import CHILDREN, ChildSpec
from breezeway_sim import Simulator

PARENT_TABLES = {"properties": "properties", "reservations": "reservations", "tasks": "tasks"}
EMBEDDED_TABLES = tuple(spec.table for spec in CHILDREN if spec.source is not None)
DETAIL_TABLES = ("task_comments", "task_requirements")
CHILD_TABLES = (*EMBEDDED_TABLES, *DETAIL_TABLES)


def expected(sim: Simulator, company_id: int, spec: ChildSpec) -> dict[tuple[int, int], Any]:
    """The rows a perfect sync holds: (parent id, item id or position) -> the item."""
    if spec.table in DETAIL_TABLES:
        truth = sim.truth(company_id, spec.table)
        if spec.table == "task_requirements":
            return dict(truth)
        return {
            (c["task_id"], cid): {k: v for k, v in c.items() if k != "task_id"}
            for cid, c in truth.items()
        }
    out: dict[tuple[int, int], Any] = {}
    assert spec.source is not None
    for parent_id, record in sim.truth(company_id, spec.parent).items():
        for position, item in enumerate(record.get(spec.source) or []):
            out[(parent_id, item["id"] if spec.id_column else position)] = item
    return out


async def stored(pool: asyncpg.Pool, region: str, spec: ChildSpec) -> dict[tuple[int, int], Any]:
    """The rows of live parents, keyed like ``expected``."""
    key = spec.id_column or "position"
    rows = await pool.fetch(
        f"SELECT c.{spec.parent_column} AS parent, c.{key} AS key, c.raw "
        f"FROM breezeway.{spec.table} c JOIN breezeway.{PARENT_TABLES[spec.parent]} p "
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
    specs = {spec.table: spec for spec in CHILDREN}
    found = []
    for region, company_id in regions.items():
        for table in tables:
            spec = specs[table]
            truth = expected(sim, company_id, spec)
            db = await stored(pool, region, spec)
            missing = set(truth) - set(db)
            extra = set(db) - set(truth)
            changed = [key for key in set(truth) & set(db) if truth[key] != db[key]]
            if missing or extra or changed:
                found.append(
                    f"{region}/{table}: {len(missing)} missing {sorted(missing)[:3]}, "
                    f"{len(extra)} extra {sorted(extra)[:3]}, {len(changed)} differ {sorted(changed)[:3]}"
                )
    return found
