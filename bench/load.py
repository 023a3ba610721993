"""Benchmark: upsert N realistic task records with the loader vs. asyncpg executemany.

Three passes each, into a fresh database: all new; the same records again (all
unchanged); again with 10% changed. The loader runs as the sync engine uses it,
``Loader.load_batches`` (``BREEZEWAY_BATCHES_IN_FLIGHT``, default 3, batches in
flight, each its own transaction: the ``loader`` figures); as one ``Loader.load``
per batch, one after the other (``loader_sequential``); as ``loader`` without
writing the tasks' child tables (``loader_no_children``: the figure before them;
the records carry one assignment, cost, supply, photo and tag each); and as
``loader`` with the child tables' foreign keys dropped (``loader_children_no_fk``:
what their per-row checks cost). The baseline is a plain parameterised upsert
with ``executemany``, one transaction per batch. Prints a table and, as its last
line, one JSON object with the figures. It asserts nothing.

    .venv/bin/python bench/load.py [--records 100000] [--batch 1000] [--concurrency 3]

The database server is ``DATABASE_URL`` when set, else 127.0.0.1:5432 (user
postgres); a throwaway database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from breezeway_daemon.config import Settings, load_settings  # noqa: E402
from breezeway_daemon.db.children import CHILDREN, EMBEDDED  # noqa: E402
from breezeway_daemon.db.loader import Loader  # noqa: E402
from breezeway_daemon.db.pool import create_pool  # noqa: E402
from breezeway_daemon.entities import PROPERTIES, TASKS  # noqa: E402
from breezeway_daemon.records import column_values, record_id  # noqa: E402
from throwaway import create_database, drop_database  # noqa: E402

REGION = "bench"
PROPERTY_COUNT = 500


def task_record(rng: random.Random, task_id: int) -> dict[str, Any]:
    """A task shaped like the API's, about 1.4 kB of JSON."""
    home = rng.randrange(1, PROPERTY_COUNT + 1)
    day = f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
    return {
        "id": task_id,
        "home_id": home,
        "reference_property_id": f"PMS-{home:05d}",
        "name": rng.choice(["Turnover clean", "Linen change", "Hot tub service", "Inspection"]),
        "description": "Standard departure clean; restock amenities and check the thermostat.",
        "type_department": rng.choice(["housekeeping", "maintenance", "inspection"]),
        "type_priority": rng.choice(["low", "normal", "high", "urgent"]),
        "type_task_status": {"code": "finished", "name": "Finished", "stage": "finished"},
        "scheduled_date": day,
        "scheduled_time": "11:00:00",
        "paused": False,
        "created_at": f"{day}T08:{rng.randrange(60):02d}:00",
        "updated_at": f"{day}T15:{rng.randrange(60):02d}:00+00:00",
        "started_at": f"{day}T11:05:00",
        "finished_at": f"{day}T13:40:00",
        "created_by": {"id": rng.randrange(1, 200), "name": "Jordan Avery"},
        "finished_by": {"id": rng.randrange(1, 200), "name": "Sam Ortiz"},
        "requested_by": None,
        "subdepartment": {"id": 3, "name": "Deep clean"},
        "template_id": rng.randrange(1, 40),
        "task_series_id": None,
        "parent_task_id": None,
        "linked_reservation": {"id": rng.randrange(1, 10**6), "external_reservation_id": "HA-1"},
        "assignments": [
            {
                "id": rng.randrange(10**6),
                "assignee_id": rng.randrange(1, 200),
                "name": "Sam Ortiz",
                "employee_code": "E-0142",
                "expires_at": None,
                "type_task_user_status": "accepted",
            }
        ],
        "costs": [{"id": rng.randrange(10**6), "cost": "12.50", "description": "Supplies"}],
        "supplies": [{"id": rng.randrange(1, 150), "name": "Paper towels", "quantity": 2}],
        "photos": [{"id": rng.randrange(10**6), "url": "https://example.invalid/p/1.jpg"}],
        "task_tags": [{"id": 4, "name": "VIP"}],
        "rate_type": "hourly",
        "rate_paid": "120.00 USD",
        "total_time": "2:35:00",
        "estimated_time": "2:30:00",
        "estimated_rate": "115.00",
        "total_cost": f"{rng.randrange(20, 400)}.{rng.randrange(100):02d}",
        "billable": True,
        "itemized_cost": None,
        "bill_to": "owner",
        "report_url": f"https://example.invalid/task/report/{task_id}",
        "summary": {"note": "All good. Guest left the kitchen tidy; two towels missing."},
    }


def batches(records: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [records[i : i + size] for i in range(0, len(records), size)]


async def with_loader(
    pool: asyncpg.Pool, records: list[dict[str, Any]], size: int, concurrency: int
) -> float:
    """The loader as the sync engine uses it: batches pipelined, each its own transaction."""
    loader = Loader(pool, TASKS, REGION)
    start = time.perf_counter()
    await loader.load_batches(batches(records, size), concurrency=concurrency)
    return time.perf_counter() - start


async def with_sequential_loader(
    pool: asyncpg.Pool, records: list[dict[str, Any]], size: int, concurrency: int
) -> float:
    """One ``Loader.load`` per batch, each awaited before the next."""
    loader = Loader(pool, TASKS, REGION)
    start = time.perf_counter()
    for batch in batches(records, size):
        await loader.load(batch)
    return time.perf_counter() - start


EXECUTEMANY_SQL = (
    "INSERT INTO breezeway.tasks (region_code, id, {columns}, raw, content_hash) "
    "VALUES ($1, $2, {params}, $%d, $%d) "
    "ON CONFLICT (region_code, id) DO UPDATE SET {updates}, raw = EXCLUDED.raw, "
    "content_hash = EXCLUDED.content_hash, synced_at = now()"
)


def executemany_statement() -> str:
    names = TASKS.typed_column_names
    params = ", ".join(f"${i + 3}" for i in range(len(names)))
    updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in names)
    n = len(names) + 3
    return EXECUTEMANY_SQL.format(columns=", ".join(names), params=params, updates=updates) % (
        n,
        n + 1,
    )


async def with_executemany(
    pool: asyncpg.Pool, records: list[dict[str, Any]], size: int, concurrency: int
) -> float:
    """The baseline: a plain parameterised upsert, one row per statement execution."""
    statement = executemany_statement()
    start = time.perf_counter()
    for batch in batches(records, size):
        args = [
            (REGION, record_id(r), *column_values(r, TASKS.columns, {}), orjson.dumps(r), b"")
            for r in batch
        ]
        async with pool.acquire() as conn, conn.transaction():
            await conn.executemany(statement, args)
    return time.perf_counter() - start


async def with_loader_no_children(
    pool: asyncpg.Pool, records: list[dict[str, Any]], size: int, concurrency: int
) -> float:
    """``with_loader`` without the tasks' child tables (the loader's figure before them)."""
    kept = EMBEDDED.pop("tasks")
    try:
        return await with_loader(pool, records, size, concurrency)
    finally:
        EMBEDDED["tasks"] = kept


async def drop_child_foreign_keys(pool: asyncpg.Pool) -> None:
    """Drop the child tables' foreign keys (in the throwaway database only)."""
    tables = [spec.table for spec in CHILDREN]
    rows = await pool.fetch(
        "SELECT conrelid::regclass::text AS tab, conname FROM pg_constraint "
        "WHERE contype = 'f' AND conrelid::regclass::text = ANY($1)",
        [f"breezeway.{table}" for table in tables],
    )
    for row in rows:
        await pool.execute(f'ALTER TABLE {row["tab"]} DROP CONSTRAINT "{row["conname"]}"')


def changed(
    records: list[dict[str, Any]], share: float, rng: random.Random
) -> list[dict[str, Any]]:
    out = []
    for record in records:
        if rng.random() < share:
            record = {**record, "total_cost": f"{rng.randrange(20, 400)}.00", "paused": True}
        out.append(record)
    return out


async def run(args: argparse.Namespace) -> dict[str, float]:
    rng = random.Random(7)
    records = [task_record(rng, i) for i in range(1, args.records + 1)]
    size = sum(len(orjson.dumps(r)) for r in records[:1000]) / 1000
    print(
        f"{args.records} task records, {size:.0f} bytes of JSON each on average, "
        f"batch {args.batch}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    properties = [{"id": i, "name": f"Property {i}"} for i in range(1, PROPERTY_COUNT + 1)]
    results: dict[str, float] = {}
    methods = {
        "loader": with_loader,
        "loader_no_children": with_loader_no_children,
        "loader_children_no_fk": with_loader,
        "loader_sequential": with_sequential_loader,
        "executemany": with_executemany,
    }
    for method, run_pass in methods.items():
        url = await create_database("load")
        try:
            settings = load_settings(Path("/nonexistent"), database_url=url)
            pool = await create_pool(settings, max_size=max(4, args.concurrency))
            await Loader(pool, PROPERTIES, REGION).load(properties)
            if method == "loader_children_no_fk":
                await drop_child_foreign_keys(pool)
            passes = {
                "new": records,
                "unchanged": records,
                "changed10": changed(records, 0.10, random.Random(3)),
            }
            for label, data in passes.items():
                seconds = await run_pass(pool, data, args.batch, args.concurrency)
                results[f"{method}_{label}_rows_per_s"] = len(data) / seconds
                print(
                    f"{method:18s} {label:10s} {seconds:7.2f} s  {len(data) / seconds:10,.0f} rows/s"
                )
            await pool.close()
        finally:
            await drop_database(url)
    ratios = {
        "new": results["loader_new_rows_per_s"] / results["executemany_new_rows_per_s"],
        "unchanged": results["loader_unchanged_rows_per_s"]
        / results["executemany_unchanged_rows_per_s"],
    }
    print(f"loader / executemany: new {ratios['new']:.2f}x, unchanged {ratios['unchanged']:.2f}x")
    children = {
        label: results[f"loader_{label}_rows_per_s"]
        / results[f"loader_no_children_{label}_rows_per_s"]
        for label in ("new", "unchanged", "changed10")
    }
    print("with child tables / without: " + ", ".join(f"{k} {v:.2f}x" for k, v in children.items()))
    no_fk = {
        label: results[f"loader_children_no_fk_{label}_rows_per_s"]
        / results[f"loader_no_children_{label}_rows_per_s"]
        for label in ("new", "unchanged", "changed10")
    }
    print(
        "with child tables, their foreign keys dropped / without: "
        + ", ".join(f"{k} {v:.2f}x" for k, v in no_fk.items())
    )
    keys = (
        "loader_new_rows_per_s",
        "loader_unchanged_rows_per_s",
        "loader_changed10_rows_per_s",
        "executemany_new_rows_per_s",
        "executemany_unchanged_rows_per_s",
        "executemany_changed10_rows_per_s",
        "loader_sequential_new_rows_per_s",
        "loader_sequential_unchanged_rows_per_s",
        "loader_sequential_changed10_rows_per_s",
        "loader_no_children_new_rows_per_s",
        "loader_no_children_unchanged_rows_per_s",
        "loader_no_children_changed10_rows_per_s",
        "loader_children_no_fk_new_rows_per_s",
        "loader_children_no_fk_unchanged_rows_per_s",
        "loader_children_no_fk_changed10_rows_per_s",
    )
    figures: dict[str, float] = {key: round(results[key]) for key in keys}
    figures["new_ratio"] = round(ratios["new"], 2)
    figures["unchanged_ratio"] = round(ratios["unchanged"], 2)
    for label, ratio in children.items():
        figures[f"children_{label}_ratio"] = round(ratio, 2)
    for label, ratio in no_fk.items():
        figures[f"children_no_fk_{label}_ratio"] = round(ratio, 2)
    figures["concurrency"] = args.concurrency
    figures["load_average_1m"] = round(os.getloadavg()[0], 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=Settings.model_fields["batches_in_flight"].default,
        help="batches in flight for load_batches (default: as the sync engine)",
    )
    figures = asyncio.run(run(parser.parse_args()))
    print(orjson.dumps(figures).decode())


if __name__ == "__main__":
    main()
