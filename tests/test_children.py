"""Child tables written as sets (db/children.py) against a real PostgreSQL."""

from __future__ import annotations

from typing import Any

import asyncpg

from breezeway_daemon.db.children import CHILDREN, ChildWriter
from breezeway_daemon.db.loader import Loader
from breezeway_daemon.entities import PROPERTIES, RESERVATIONS, TASKS

REGION = "nashville"


def task(tid: int, **fields: Any) -> dict[str, Any]:
    return {"id": tid, "home_id": 1, "name": "Clean", "updated_at": "2026-04-21T10:00:00",
            "assignments": [{"id": 10, "assignee_id": 7, "name": "Ana", "type_task_user_status": "accepted"},
                            {"id": 11, "assignee_id": 8, "name": "Bo", "expires_at": "2026-05-01T00:00:00"}],
            "photos": [{"id": 20, "url": "https://p.example.com/1.jpg"}],
            "task_tags": [{"id": 5, "name": "vip"}], "costs": [], "supplies": None,
            **fields}  # fmt: skip


async def stored(pool: asyncpg.Pool, table: str, parent: str = "task_id") -> list[tuple]:
    rows = await pool.fetch(
        f"SELECT * FROM breezeway.{table} WHERE region_code = $1 ORDER BY {parent}, position",
        REGION,
    )
    return [tuple(row.values()) for row in rows]


async def write(pool: asyncpg.Pool, records: list[dict[str, Any]]) -> int:
    """Load tasks (the loader writes their children); returns the child items rejected,
    as the loader counts them and as ``rejected_records`` holds them."""
    before = await pool.fetchval("SELECT count(*) FROM breezeway.rejected_records")
    loaded = await Loader(pool, TASKS, REGION).load(records)
    after = await pool.fetchval("SELECT count(*) FROM breezeway.rejected_records")
    assert loaded.records_rejected == 0  # the parents are stored
    assert loaded.items_rejected == after - before
    return loaded.items_rejected


async def parents(pool: asyncpg.Pool) -> None:
    await Loader(pool, PROPERTIES, REGION).load([{"id": 1, "name": "Cabin"}])


async def test_a_changed_parent_replaces_its_children_as_a_set(clean_db: asyncpg.Pool) -> None:
    await parents(clean_db)
    assert await write(clean_db, [task(100), task(101)]) == 0
    rows = await clean_db.fetch(
        "SELECT task_id, id, position, assignee_id, assignee_name, status, expires_at "
        "FROM breezeway.task_assignments ORDER BY task_id, id"
    )
    assert [(r["task_id"], r["id"], r["position"]) for r in rows] == [
        (100, 10, 0), (100, 11, 1), (101, 10, 0), (101, 11, 1)
    ]  # fmt: skip
    assert rows[0]["assignee_name"] == "Ana" and rows[1]["expires_at"].year == 2026
    again = task(100, assignments=[{"id": 11, "assignee_id": 8, "name": "Bo"}], photos=[])
    await write(clean_db, [again])
    assert [r[1:4] for r in await stored(clean_db, "task_assignments")] == [
        (100, 11, 0), (101, 10, 0), (101, 11, 1)
    ]  # fmt: skip
    photos = await clean_db.fetch("SELECT task_id FROM breezeway.task_photos")
    assert [r["task_id"] for r in photos] == [101]
    tags = await clean_db.fetch("SELECT task_id, tag_id, name FROM breezeway.task_tags")
    assert sorted(tuple(r) for r in tags) == [(100, 5, "vip"), (101, 5, "vip")]


async def test_a_changed_parent_writes_only_the_children_that_differ(
    clean_db: asyncpg.Pool,
) -> None:
    await parents(clean_db)
    await write(clean_db, [task(100)])
    await Loader(clean_db, RESERVATIONS, REGION).load([reservation(2, ["Ana", "Bo"])])
    versions = "SELECT {key}, xmin::text FROM breezeway.{table} ORDER BY {key}"
    tags_before = await clean_db.fetch(versions.format(key="tag_id", table="task_tags"))
    assignments_before = await clean_db.fetch(versions.format(key="id", table="task_assignments"))
    # The task changes: its name, one assignment's status; its tag and photo stay.
    assignments = task(100)["assignments"]
    changed = task(100, name="Deep clean", assignments=[
        {**assignments[0], "type_task_user_status": "finished"}, assignments[1]])  # fmt: skip
    await write(clean_db, [changed])
    assert await clean_db.fetch(versions.format(key="tag_id", table="task_tags")) == tags_before
    after = await clean_db.fetch(versions.format(key="id", table="task_assignments"))
    assert after[1] == assignments_before[1]  # the same item: not rewritten
    assert after[0]["id"] == 10 and after[0]["xmin"] != assignments_before[0]["xmin"]
    status = "SELECT status FROM breezeway.task_assignments WHERE id = 10"
    assert await clean_db.fetchval(status) == "finished"
    # Keyed by position: a guest who left the array leaves the table; the others stay put.
    await Loader(clean_db, RESERVATIONS, REGION).load([reservation(2, ["Bo"], checkin="x")])
    guests = await stored(clean_db, "reservation_guests", parent="reservation_id")
    assert [(r[2], r[3]) for r in guests] == [(0, "Bo")]


def reservation(rid: int, guests: list[str], **fields: Any) -> dict[str, Any]:
    return {"id": rid, "property_id": 1, "guests": [{"first_name": name} for name in guests],
            **fields}  # fmt: skip


async def test_bad_items_are_rejected_and_the_counts_add_up(clean_db: asyncpg.Pool) -> None:
    await parents(clean_db)
    bad = task(
        102,
        assignments=[{"assignee_id": 7}, {"id": 12, "assignee_id": 7}, {"id": 12}, "Ana"],
        photos=["https://p.example.com/loose.jpg", {"id": 21, "url": "u\x00rl"}],
        task_tags={"id": 5},
        costs=[{"id": 30, "cost": "lots"}],
    )
    rejected = await write(clean_db, [bad])
    reasons = await clean_db.fetch(
        "SELECT entity_type, record_id, reason FROM breezeway.rejected_records ORDER BY id"
    )
    assert rejected == len(reasons) == 6
    assert {(r["entity_type"], r["record_id"], r["reason"]) for r in reasons} >= {
        ("task_assignments", "102[0]", "item 0 has no id"),
        ("task_assignments", "102[2]", "item 2 repeats id 12"),
        ("task_assignments", "102[3]", "item 3 is a str, not an object"),
        ("task_photos", "102[0]", "item 0 is a str, not an object"),
        ("task_tags", "102", "task_tags is a dict, not an array"),
    }
    assert any(r["entity_type"] == "task_costs" and "cost" in r["reason"] for r in reasons)
    received = 4 + 2 + 1 + 1
    kept = sum(
        [
            await clean_db.fetchval(f"SELECT count(*) FROM breezeway.{table}")
            for table in ("task_assignments", "task_photos", "task_tags", "task_costs")
        ]
    )
    assert kept + rejected == received
    assert await clean_db.fetchval("SELECT url FROM breezeway.task_photos") == "url"
    assert await clean_db.fetchval("SELECT count(*) FROM breezeway.tasks") == 1


async def test_fetched_details_replace_and_reject(clean_db: asyncpg.Pool) -> None:
    await parents(clean_db)
    await Loader(clean_db, TASKS, REGION).load([task(100), task(101)])
    writer = ChildWriter(REGION, run_id=None)
    requirements = [
        {"section_name": "Kitchen", "action": ["Wipe", "Dry"], "response": "yes",
         "photo_required": True, "photos": ["a.jpg"]},
        {"section_name": "Bath", "action": None, "response": None},
    ]  # fmt: skip
    comments = [{"id": 1, "comment": "Late", "created_by": {"id": 7, "name": "Ana"}}]
    async with clean_db.acquire() as conn, conn.transaction():
        sets = [
            writer.fetched("task_requirements", {100: requirements, 101: {"section_name": "x"}}),
            writer.fetched("task_comments", {100: comments, 101: []}),
        ]
        assert await writer.replace(conn, sets) == 1
    rows = await clean_db.fetch("SELECT * FROM breezeway.task_requirements ORDER BY position")
    assert [(r["task_id"], r["position"], r["action"], r["photo_count"]) for r in rows] == [
        (100, 0, ["Wipe", "Dry"], 1), (100, 1, None, 0)
    ]  # fmt: skip
    comment = await clean_db.fetchrow("SELECT * FROM breezeway.task_comments")
    assert (comment["created_by_id"], comment["created_by_name"]) == (7, "Ana")
    async with clean_db.acquire() as conn, conn.transaction():
        await writer.replace(conn, [writer.fetched("task_requirements", {100: requirements[:1]})])
    assert await clean_db.fetchval("SELECT count(*) FROM breezeway.task_requirements") == 1


def test_every_child_table_names_a_parent_with_children() -> None:
    assert {spec.parent for spec in CHILDREN} == {"properties", "reservations", "tasks"}
    assert len({spec.table for spec in CHILDREN}) == len(CHILDREN)
