"""The loader against a real PostgreSQL: counts, dedupe, bad records, nothing lost."""

from __future__ import annotations

import tracemalloc
from typing import Any

import asyncpg
import pytest

from breezeway_daemon.config import Settings
from breezeway_daemon.db.connection import database_error
from breezeway_daemon.db.loader import KeySplit, Loader, LoadResult
from breezeway_daemon.db.pool import create_pool
from breezeway_daemon.entities import PROPERTIES, RESERVATIONS, TAGS, TASKS
from breezeway_daemon.records import ColumnReader, RecordRejected, serialize

REGION = "nashville"


def prop(pid: int, **fields: Any) -> dict[str, Any]:
    return {"id": pid, "company_id": 1001, "name": f"Cabin {pid}", "status": "active",
            "latitude": "36.16", "longitude": -86.78, "bedrooms": 3, "notes": {"wifi": "x"},
            **fields}  # fmt: skip


def task(tid: int, home_id: int, **fields: Any) -> dict[str, Any]:
    return {"id": tid, "home_id": home_id, "name": "Turnover clean", "type_department": "housekeeping",
            "type_task_status": {"code": "finished", "name": "Finished", "stage": "finished"},
            "scheduled_date": "2026-05-01", "created_at": "2026-04-20T10:00:00",
            "updated_at": "2026-04-21T10:00:00+00:00", "total_cost": "85.50",
            "linked_reservation": {"id": 99999999, "external_reservation_id": None},
            "paused": False, **fields}  # fmt: skip


async def rows(pool: asyncpg.Pool, table: str) -> dict[int, asyncpg.Record]:
    found = await pool.fetch(f"SELECT * FROM breezeway.{table} WHERE region_code = $1", REGION)
    return {row["id"]: row for row in found}


async def test_new_updated_unchanged_counts(clean_db: asyncpg.Pool) -> None:
    loader = Loader(clean_db, PROPERTIES, REGION)
    first = await loader.load([prop(1), prop(2), prop(3)])
    assert (first.records_new, first.records_updated, first.records_unchanged) == (3, 0, 0)

    before = await rows(clean_db, "properties")
    second = await loader.load([prop(1), prop(2, name="Renamed"), prop(3), prop(4)])
    assert (
        second.records_new,
        second.records_updated,
        second.records_unchanged,
        second.records_rejected,
    ) == (1, 1, 2, 0)

    after = await rows(clean_db, "properties")
    assert after[2]["name"] == "Renamed" and after[2]["raw"]["name"] == "Renamed"
    # An unchanged row is not rewritten beyond synced_at.
    assert after[1]["changed_at"] == before[1]["changed_at"]
    assert after[1]["synced_at"] > before[1]["synced_at"]
    assert after[2]["changed_at"] > before[2]["changed_at"]


async def test_same_key_twice_in_one_batch_keeps_the_last(clean_db: asyncpg.Pool) -> None:
    result = await Loader(clean_db, PROPERTIES, REGION).load(
        [prop(1, name="first"), prop(2), prop(1, name="last")]
    )
    assert (result.records_new, result.duplicates) == (2, 1)
    assert (await rows(clean_db, "properties"))[1]["name"] == "last"


async def test_bad_records_are_rejected_with_reasons_and_the_rest_stored(
    clean_db: asyncpg.Pool,
) -> None:
    await Loader(clean_db, PROPERTIES, REGION).load([prop(1)])
    batch = [
        task(10, 1, name="nul\x00in name", description="a\x00b", costs=[{"note": "x\x00"}]),
        task(11, 1, description="x" * 100_000),
        task(12, 1, name="Ménage — 清洁 🧹", description="naïve café"),
        {"name": "no id at all", "home_id": 1},
        task(13, 1, paused="sometimes"),
        task(14, 1, scheduled_date="next tuesday"),
        task(15, 1, template_id=2**40, total_cost=10**30),
        task(16, 1, template_id=2**70),
        task(17, 1, id="not-a-number"),
        task(18, 1, **{"key\x00with": "nul"}),
        "not even an object",
        task(19, 777),  # property 777 is not known
    ]
    result = await Loader(clean_db, TASKS, REGION).load(batch)
    assert result.records_processed == len(batch)
    assert (result.records_new, result.records_rejected) == (5, 7)
    stored = await rows(clean_db, "tasks")
    assert set(stored) == {10, 11, 12, 15, 18}
    assert stored[10]["name"] == "nulin name" and stored[10]["raw"]["costs"] == [{"note": "x"}]
    assert stored[10]["raw"]["description"] == "ab"
    assert len(stored[11]["raw"]["description"]) == 100_000
    assert stored[12]["name"] == "Ménage — 清洁 🧹"
    assert stored[15]["template_id"] == 2**40 and int(stored[15]["total_cost"]) == 10**30
    assert "keywith" in stored[18]["raw"]
    assert stored[10]["linked_reservation_id"] == 99999999  # no foreign key on it

    rejected = await clean_db.fetch(
        "SELECT record_id, reason, raw FROM breezeway.rejected_records WHERE entity_type = 'tasks'"
    )
    reasons = {row["record_id"]: row["reason"] for row in rejected}
    assert len(rejected) == 7
    assert reasons["13"].startswith("paused:")
    assert reasons["14"].startswith("scheduled_date:")
    assert reasons["16"] == f"template_id: {2**70} is out of the bigint range"
    assert reasons["not-a-number"].startswith("id:")
    assert reasons["19"] == "home_id 777 is not a known properties record of this region"
    assert sorted(row["reason"] for row in rejected if row["record_id"] is None) == [
        "a str is not a record",
        "id is missing",
    ]
    # The rejected record itself is kept, so that nothing is lost.
    assert any(row["raw"] == {"name": "no id at all", "home_id": 1} for row in rejected)


async def test_unchanged_batch_touches_synced_at_only(clean_db: asyncpg.Pool) -> None:
    await Loader(clean_db, PROPERTIES, REGION).load([prop(1)])
    tasks = [task(i, 1) for i in range(100, 150)]
    loader = Loader(clean_db, TASKS, REGION)
    await loader.load(tasks)
    again = await loader.load(tasks)
    assert (again.records_new, again.records_updated, again.records_unchanged) == (0, 0, 50)


async def test_deleted_record_that_returns_is_restored(clean_db: asyncpg.Pool) -> None:
    loader = Loader(clean_db, PROPERTIES, REGION)
    await loader.load([prop(1), prop(2)])
    await clean_db.execute("UPDATE breezeway.properties SET deleted_at = now() WHERE id = 1")
    result = await loader.load([prop(1)])
    assert (result.records_updated, result.records_unchanged) == (1, 0)
    assert (await rows(clean_db, "properties"))[1]["deleted_at"] is None


async def test_orphans_can_be_returned_to_the_caller(clean_db: asyncpg.Pool) -> None:
    await Loader(clean_db, PROPERTIES, REGION).load([prop(1)])
    reservation = {"id": 5, "property_id": 2, "checkin_date": "2026-05-01"}
    result = await Loader(clean_db, RESERVATIONS, REGION).load(
        [reservation, {"id": 6, "property_id": 1}], orphans="return"
    )
    assert (
        result.records_new == 1 and result.orphans == [reservation] and result.records_rejected == 0
    )


async def test_tags_are_keyed_by_kind_and_id(clean_db: asyncpg.Pool) -> None:
    loader = Loader(clean_db, TAGS, REGION)
    await loader.load([{"id": 1, "name": "VIP"}], key_values={"tag_type": "task"})
    await loader.load([{"id": 1, "name": "Pool"}], key_values={"tag_type": "property"})
    found = await clean_db.fetch("SELECT tag_type, name FROM breezeway.tags ORDER BY tag_type")
    assert [(r["tag_type"], r["name"]) for r in found] == [("property", "Pool"), ("task", "VIP")]


async def test_regions_do_not_share_rows(clean_db: asyncpg.Pool) -> None:
    await Loader(clean_db, PROPERTIES, "austin").load([prop(1, name="Austin")])
    result = await Loader(clean_db, PROPERTIES, REGION).load([prop(1)])
    assert result.records_new == 1
    names = await clean_db.fetch("SELECT region_code, name FROM breezeway.properties ORDER BY 1")
    assert [tuple(r) for r in names] == [("austin", "Austin"), ("nashville", "Cabin 1")]


# --- pipelined loading, races and retries -------------------------------------------


async def table_state(pool: asyncpg.Pool, table: str, region: str) -> dict[int, tuple[Any, ...]]:
    found = await pool.fetch(
        f"SELECT id, raw, content_hash, deleted_at IS NULL AS live FROM breezeway.{table} "
        "WHERE region_code = $1",
        region,
    )
    return {row["id"]: (row["raw"], row["content_hash"], row["live"]) for row in found}


def task_batches(home_id: int) -> list[list[Any]]:
    """Batches with keys repeated across and within batches, bad records and orphans."""
    return [
        [task(1, home_id), task(2, home_id), task(3, home_id, paused="maybe")],
        [task(2, home_id, name="second"), task(4, 777), {"no": "id"}],  # 2 again; 777 orphan
        [task(5, home_id), task(5, home_id, name="last of five"), task(1, home_id)],
        [task(2, home_id, name="third"), task(6, home_id)],
    ]


async def test_pipelined_batches_store_what_sequential_loads_store(clean_db: asyncpg.Pool) -> None:
    for region in ("austin", "smoky"):
        await Loader(clean_db, PROPERTIES, region).load([prop(1)])
    sequential = Loader(clean_db, TASKS, "austin")
    expected = LoadResult()
    for batch in task_batches(1):
        expected.add(await sequential.load(batch, orphans="return"))

    seen: list[LoadResult] = []
    pipelined = Loader(clean_db, TASKS, "smoky")
    got = await pipelined.load_batches(
        task_batches(1), concurrency=3, orphans="return", on_result=seen.append
    )

    assert got == expected
    assert [r.records_processed for r in seen] == [3, 3, 3, 2]  # in submission order
    assert (
        got.records_new,
        got.records_updated,
        got.records_unchanged,
        got.records_rejected,
        got.duplicates,
    ) == (4, 2, 1, 2, 1)
    assert [o["id"] for o in got.orphans] == [4]
    assert await table_state(clean_db, "tasks", "smoky") == await table_state(
        clean_db, "tasks", "austin"
    )
    names = dict(
        await clean_db.fetch(
            "SELECT id, name FROM breezeway.tasks WHERE region_code = 'smoky' ORDER BY id"
        )
    )
    assert names[2] == "third" and names[5] == "last of five"  # the last record of a key wins


async def test_pipeline_accepts_async_iterables_and_the_submit_api(clean_db: asyncpg.Pool) -> None:
    await Loader(clean_db, PROPERTIES, REGION).load([prop(1)])
    loader = Loader(clean_db, TASKS, REGION)

    async def pages():
        for start in range(0, 60, 20):
            yield [task(i, 1) for i in range(start, start + 20)]

    first = await loader.load_batches(pages())
    assert (first.records_new, first.records_processed) == (60, 60)
    async with loader.pipeline() as pipeline:
        async for page in pages():
            await pipeline.submit(page)
    assert (pipeline.result.records_unchanged, pipeline.result.records_new) == (60, 0)


async def test_a_failing_batch_fails_the_pipeline_after_the_others_settle(
    clean_db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    loader = Loader(clean_db, PROPERTIES, REGION)
    original = Loader._write_batch

    async def failing(self, conn, batch, *args):
        if 2 in batch.entries:
            raise RuntimeError("boom")
        return await original(self, conn, batch, *args)

    monkeypatch.setattr(Loader, "_write_batch", failing)
    with pytest.raises(RuntimeError, match="boom"):
        await loader.load_batches([[prop(1)], [prop(2)], [prop(3)]], concurrency=2)
    monkeypatch.undo()
    stored = await rows(clean_db, "properties")
    assert 1 in stored and 2 not in stored  # committed batches stay; the failed one rolled back


async def test_a_row_inserted_by_another_writer_meanwhile_retries_the_batch(
    clean_db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    loader = Loader(clean_db, PROPERTIES, REGION)
    await loader.load([prop(1), prop(2)])
    before = await rows(clean_db, "properties")
    original = Loader._classify
    lookups = []

    async def blind(self, conn, batch, fixed):  # as if rows 1 and 2 were stored after the lookup
        split = await original(self, conn, batch, fixed)
        lookups.append(split)
        return KeySplit(new=list(batch.entries)) if len(lookups) == 1 else split

    monkeypatch.setattr(Loader, "_classify", blind)
    result = await loader.load([prop(1), prop(2, name="Changed"), prop(3)])
    assert len(lookups) == 2  # the unique violation rolled the first attempt back
    assert (result.records_new, result.records_updated, result.records_unchanged) == (1, 1, 1)
    after = await rows(clean_db, "properties")
    assert after[2]["name"] == "Changed" and after[3]["name"] == "Cabin 3"
    assert after[1]["changed_at"] == before[1]["changed_at"]  # same content: not rewritten
    assert after[1]["synced_at"] > before[1]["synced_at"]  # but received now


async def test_a_deadlock_retries_the_whole_batch_once(
    clean_db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    loader = Loader(clean_db, PROPERTIES, REGION)
    original = Loader._write
    calls = []

    async def deadlocking(self, *args):
        calls.append(1)
        if len(calls) == 1:
            raise database_error(asyncpg.DeadlockDetectedError("deadlock detected"))
        return await original(self, *args)

    monkeypatch.setattr(Loader, "_write", deadlocking)
    result = await loader.load([prop(1), prop(2), "not a record", prop(3, latitude="north")])
    assert len(calls) == 2
    assert (result.records_new, result.records_rejected, result.records_processed) == (2, 2, 4)
    assert set(await rows(clean_db, "properties")) == {1, 2}
    count = await clean_db.fetchval("SELECT count(*) FROM breezeway.rejected_records")
    assert count == 2  # the rolled-back attempt left nothing behind


async def test_unchanged_rows_are_touched_without_a_new_index_entry(clean_db: asyncpg.Pool) -> None:
    loader = Loader(clean_db, PROPERTIES, REGION)
    await loader.load([prop(i) for i in range(1, 201)])
    before = await rows(clean_db, "properties")
    again = await loader.load([prop(i) for i in range(1, 201)])
    assert (again.records_unchanged, again.records_new, again.records_updated) == (200, 0, 0)
    after = await rows(clean_db, "properties")
    assert all(after[i]["synced_at"] > before[i]["synced_at"] for i in after)
    assert all(after[i]["changed_at"] == before[i]["changed_at"] for i in after)
    options = await clean_db.fetchval(
        "SELECT reloptions FROM pg_class WHERE oid = 'breezeway.properties'::regclass"
    )
    assert "fillfactor=50" in options  # room on the page for HOT updates (migration 002)


async def test_the_key_lookup_is_planned_for_each_batch_not_cached_from_an_empty_table(
    clean_db: asyncpg.Pool, base_settings: Settings
) -> None:
    # After ANALYZE of an empty table, a plan cached by the early batches would scan the
    # table whole (and hash-join the batch) for every later batch, however large it grew:
    # the statement that looks the batch's keys up is planned afresh every time.
    await clean_db.execute("ANALYZE breezeway.properties")
    one = await create_pool(base_settings, application_name="bw-test-plans", max_size=1)
    try:
        loader = Loader(one, PROPERTIES, REGION)
        for start in range(1, 801, 100):
            await loader.load([prop(i) for i in range(start, start + 100)])
        plans = await one.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement LIKE 'WITH stored AS MATERIALIZED%'"
        )
    finally:
        await one.close()
    assert (plans["generic_plans"], plans["custom_plans"]) == (0, 8)


def test_the_compiled_column_reader_agrees_with_the_plain_one() -> None:
    reader = ColumnReader(TASKS.columns)
    samples = [
        task(1, 5),
        task(2, "7", paused=1, total_cost=12, template_id=3.0, created_at=" 2026-04-20T10:00:00 "),
        task(3, 5, scheduled_date="2026-05-01T23:30:00-02:00", updated_at="2026-04-21 10:00:00Z"),
        task(4, 5, name=12, type_department={"x": 1}, billable="true", linked_reservation=None),
        {"id": 5, "type_task_status": "not an object", "total_cost": ""},
    ]
    for record in samples:
        assert reader.values(record, {"property_id": 9}) == reader._read(record, {"property_id": 9})
    for bad in ({"id": 6}, task(7, 5, paused="sometimes"), task(8, 5, template_id=2**64)):
        with pytest.raises(RecordRejected) as fast:
            reader.values(bad, {})
        with pytest.raises(RecordRejected) as plain:
            reader._read(bad, {})
        assert str(fast.value) == str(plain.value)


async def test_connections_never_compile_statements(pool: asyncpg.Pool) -> None:
    # JIT costs ~15 ms a statement; a batch's cost estimate can pass jit_above_cost
    # while its real work is a few milliseconds (it doubled an unchanged batch's time).
    assert await pool.fetchval("SHOW jit") == "off"


def test_serialized_records_take_the_memory_of_their_json() -> None:
    # A batch holds the JSON of each of its records until it is committed.
    record = task(1, 1, description="x" * 1700)
    tracemalloc.start()
    try:
        held = [serialize(record)[1] for _ in range(200)]
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size / len(held) < 2 * len(held[0])
