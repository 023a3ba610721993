"""Bad records of every kind the simulator serves, in every entity that carries them.

Each is stored (cleaned) or rejected with a reason, never failing its batch; every run's
counts add up, and ``rejected_records`` holds exactly the rejections each run counted.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from breezeway_daemon.db.children import CHILD_TABLES
from breezeway_daemon.entities import ENTITY_NAMES
from breezeway_daemon.records import without_nul
from breezeway_daemon.sync import run_batch
from breezeway_sim import BAD_CHILD_KINDS, BAD_RECORD_KINDS

from support.batches import Batches
from support.groundtruth import duplicate_keys, stored
from support.reliability import RelEnv
from support.runs import pair_rows, running_rows

KINDS = sorted(BAD_RECORD_KINDS)
CARRIERS = ("properties", "reservations", "tasks", "people", "supplies")  # tags stay clean
TEXT_FIELD = {"properties": "name", "reservations": "note", "tasks": "description",
              "people": "first_name", "supplies": "name"}  # fmt: skip


async def _check_run_counts(pool: asyncpg.Pool, batches: Batches, since_id: int) -> int:
    """Every run from ``since_id`` on succeeded and its counts add up; how many runs."""
    rows = await pool.fetch(
        "SELECT * FROM breezeway.etl_sync_log WHERE id >= $1 ORDER BY id", since_id
    )
    for row in rows:
        what = f"run {row['id']} {row['region_code']}/{row['entity_type']}"
        assert row["sync_status"] == "success", (what, row["error_message"])
        duplicates = sum(b.duplicates for b in batches.batches if b.run_id == row["id"])
        accounted = (
            row["records_new"] + row["records_updated"] + row["records_unchanged"]
            + row["records_rejected"] + duplicates
        )  # fmt: skip
        assert row["records_processed"] == accounted, (what, dict(row), duplicates)
        rejected = await pool.fetch(
            "SELECT reason FROM breezeway.rejected_records WHERE run_id = $1", row["id"]
        )
        # Child items rejected while their parents were stored are counted apart.
        assert len(rejected) == row["records_rejected"] + row["items_rejected"], what
        assert all(r["reason"].strip() for r in rejected), what
    return len(rows)


async def _outcome(
    env: RelEnv, region: str, entity: str, record: dict[str, Any], db: dict[Any, Any]
) -> tuple[str, str]:
    """``("stored", "")`` or ``("rejected", reason)`` for one injected record."""
    rejections = await pair_rows(
        env.pool, "rejected_records", region, entity, "record_id, reason, raw"
    )
    if "id" not in record:
        name = record.get(TEXT_FIELD[entity])
        found = [r for r in rejections if r["record_id"] is None and
                 isinstance(r["raw"], dict) and r["raw"].get(TEXT_FIELD[entity]) == name]  # fmt: skip
        assert found, f"{region}/{entity}: the record without an id was neither stored nor rejected"
        return "rejected", found[0]["reason"]
    found = [r for r in rejections if r["record_id"] == str(record["id"])]
    if record["id"] in db:
        assert not found, f"{region}/{entity} {record['id']} both stored and rejected"
        return "stored", ""
    assert found, f"{region}/{entity} {record['id']}: neither stored nor rejected"
    return "rejected", found[0]["reason"]


async def _check_injected(env: RelEnv, kinds: set[str]) -> dict[str, set[str]]:
    """Each injected record's fate, checked against what its kind calls for."""
    fates: dict[str, set[str]] = {}
    for region, company in env.regions.items():
        for entity in CARRIERS:
            db = await stored(env.pool, region, entity)
            truth = env.sim.truth(company, entity)
            injected = env.sim.bad_records(company, entity)
            bad_ids = {r["id"] for r in injected if "id" in r}
            # The real records are exactly the truth: no bad record displaced one.
            real = {key: value for key, value in db.items() if key not in bad_ids}
            assert real == truth, f"{region}/{entity} differs from the truth"
            for kind, record in zip(_kinds_of(kinds, entity), injected, strict=True):
                fate, reason = await _outcome(env, region, entity, record, db)
                fates.setdefault(kind, set()).add(fate)
                if kind in ("nul", "huge_strings"):
                    # Valid records: stored, NULs removed, nothing cut short.
                    assert fate == "stored", (region, entity, kind, reason)
                    assert db[record["id"]] == without_nul(record)
                elif kind == "no_id":
                    assert (fate, reason) == ("rejected", "id is missing")
                elif kind == "unknown_property":
                    assert fate == "rejected"
                    assert "is not a known properties record of this region" in reason, reason
            if "duplicate_id" in kinds:
                fates.setdefault("duplicate_id", set()).add("stored once")
    assert await duplicate_keys(env.pool) == {}
    return fates


def _kinds_of(kinds: set[str], entity: str) -> list[str]:
    """The kinds of ``Simulator.bad_records``, in its order."""
    from breezeway_sim.badrecords import KIND_ORDER

    return [k for k in KIND_ORDER if k in kinds and (k != "unknown_property"
                                                     or entity == "reservations")]  # fmt: skip


@pytest.mark.parametrize("kinds", [*([kind] for kind in KINDS), KINDS], ids=[*KINDS, "all-kinds"])
async def test_bad_records_are_stored_or_rejected_and_every_count_adds_up(
    rel_env: RelEnv, batches: Batches, kinds: list[str]
) -> None:
    env = rel_env
    env.sim.faults.bad_records = set(kinds)
    regions = list(env.regions)

    results = await run_batch(env.ctx, regions, ENTITY_NAMES)
    assert [(r.entity, r.status, r.error) for r in results if r.status != "success"] == []
    runs = await _check_run_counts(env.pool, batches, 1)
    assert runs >= len(results)
    fates = await _check_injected(env, set(kinds))
    assert set(fates) == set(kinds)
    print(f"bad records {'+'.join(kinds)}: " + ", ".join(
        f"{kind} {'/'.join(sorted(fate))}" for kind, fate in sorted(fates.items())))  # fmt: skip
    # First load: every record served (duplicates aside) was counted once, by one run.
    for r in results:
        company = env.regions[r.region]
        served = len(env.sim.truth(company, r.entity))
        if r.entity in CARRIERS:
            served += len(env.sim.bad_records(company, r.entity))
        if r.entity == "task_details":  # the details of each task stored, injected ones too
            served = len(await stored(env.pool, r.region, "tasks"))
        assert r.counts.records_processed == served, (r.region, r.entity)
    rejected = sum(r.counts.records_rejected + r.counts.items_rejected for r in results)
    assert rejected == await env.pool.fetchval(
        "SELECT count(*) FROM breezeway.rejected_records WHERE run_id = ANY($1::bigint[])",
        [r.run_id for r in results],
    )

    # Again, incrementally, the same bad records served: the same fates, the counts still add up.
    last = await env.pool.fetchval("SELECT max(id) FROM breezeway.etl_sync_log")
    again = await run_batch(env.ctx, regions, ENTITY_NAMES)
    assert [(r.entity, r.status, r.error) for r in again if r.status != "success"] == []
    await _check_run_counts(env.pool, batches, last + 1)
    assert await _check_injected(env, set(kinds)) == fates
    assert await running_rows(env.pool) == []


async def test_bad_child_items_are_rejected_their_parents_stored_and_counted(
    rel_env: RelEnv, batches: Batches
) -> None:
    """An assignment or photo without an id, a photo or guest that is a string, requirements
    that are an object: the parent is stored, the item goes to ``rejected_records`` under
    its child table, and each run counts it in ``items_rejected``."""
    env = rel_env
    env.sim.faults.bad_records = set(BAD_CHILD_KINDS)
    regions = list(env.regions)
    results = await run_batch(env.ctx, regions, ENTITY_NAMES)
    assert [(r.entity, r.status, r.error) for r in results if r.status != "success"] == []
    await _check_run_counts(env.pool, batches, 1)
    for region, company in env.regions.items():
        for entity in ("properties", "reservations", "tasks"):
            injected = {r["id"] for r in env.sim.bad_records(company, entity)}
            assert injected and injected <= set(await stored(env.pool, region, entity)), entity
    children = await env.pool.fetch(
        "SELECT entity_type, record_id, reason FROM breezeway.rejected_records "
        "WHERE entity_type = ANY($1::text[])",
        list(CHILD_TABLES),
    )
    assert {r["entity_type"] for r in children} == {
        "property_photos", "reservation_guests", "task_assignments", "task_photos",
        "task_requirements",
    }  # fmt: skip
    assert all(r["record_id"] and r["reason"] for r in children)
    assert sum(r.counts.items_rejected for r in results) == len(children)
    assert sum(r.counts.records_rejected for r in results) == 0
