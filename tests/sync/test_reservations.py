"""Reservations: the backfill window, and reservations of properties the database does not know."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

from breezeway_daemon.sync import EntitySync, SyncRequest

from support.groundtruth import differences, live_ids, stored
from support.runs import log_rows
from support.syncenv import SyncEnv as Env

REGION = "region_1"


async def _run(env: Env, entity: str, mode: str = "incremental", **settings: object) -> str:
    ctx = env.ctx
    if settings:
        ctx = dataclasses.replace(ctx, settings=env.settings.model_copy(update=settings))
    result = await EntitySync(ctx, SyncRequest(REGION, entity, mode)).run()
    return result.status


async def test_the_first_run_backfills_checkouts_inside_the_window(env: Env) -> None:
    company = env.company(REGION)
    assert await _run(env, "properties") == "success"
    truth = env.sim.truth(company, "reservations")
    today = datetime.now(UTC).date()
    window = today - timedelta(days=60)

    def checkout(record: dict[str, object]) -> date:
        return date.fromisoformat(str(record["checkout_date"]))

    inside = {k for k, v in truth.items() if checkout(v) >= window}
    upcoming = {k for k, v in truth.items() if checkout(v) >= today}
    assert upcoming < inside < set(truth), "the data does not tell the window from the default"

    assert await _run(env, "reservations", reservation_backfill_days=60) == "success"
    assert await live_ids(env.pool, REGION, "reservations") == inside

    # The default window (365 days) sees every stay; a narrower full listing later marks
    # nothing outside its own window deleted.
    assert await _run(env, "reservations", "full") == "success"
    assert await differences(env.pool, env.sim, {REGION: company}, ("reservations",)) == []
    assert await _run(env, "reservations", "full", reservation_backfill_days=60) == "success"
    assert await differences(env.pool, env.sim, {REGION: company}, ("reservations",)) == []
    assert (await log_rows(env.pool, REGION, "reservations"))[-1]["records_deleted"] == 0


async def test_a_reservation_of_an_unknown_property_syncs_properties_once_then_is_stored(
    env: Env,
) -> None:
    company = env.company(REGION)
    assert await _run(env, "properties") == "success"
    # The database lost one property (as if it was created after the properties run).
    lost = max(env.sim.data(company).properties)
    await env.pool.execute(
        "DELETE FROM breezeway.properties WHERE region_code = $1 AND id = $2", REGION, lost
    )
    result = await EntitySync(env.ctx, SyncRequest(REGION, "reservations")).run()
    assert result.status == "success"
    assert result.counts.records_rejected == 0
    assert (
        await differences(env.pool, env.sim, {REGION: company}, ("properties", "reservations"))
        == []
    )
    assert any(
        v["property_id"] == lost for v in (await stored(env.pool, REGION, "reservations")).values()
    )
    parent_runs = [r for r in await log_rows(env.pool, REGION, "properties")
                   if r["trigger"] == "parent-of-reservations"]  # fmt: skip
    assert [r["sync_status"] for r in parent_runs] == ["success"]


async def test_a_reservation_whose_property_stays_unknown_is_rejected_not_failing_the_run(
    env: Env,
) -> None:
    company = env.company(REGION)
    assert await _run(env, "properties") == "success"
    env.sim.faults.bad_records = {"unknown_property"}
    [bad] = env.sim.bad_records(company, "reservations")

    result = await EntitySync(env.ctx, SyncRequest(REGION, "reservations")).run()
    assert result.status == "success"
    assert result.counts.records_rejected == 1
    assert await differences(env.pool, env.sim, {REGION: company}, ("reservations",)) == []
    [rejected] = await env.pool.fetch(
        "SELECT * FROM breezeway.rejected_records WHERE region_code = $1", REGION
    )
    assert rejected["entity_type"] == "reservations"
    assert rejected["record_id"] == str(bad["id"])
    assert rejected["run_id"] == result.run_id
    assert str(bad["property_id"]) in rejected["reason"]
    assert "properties" in rejected["reason"]
    parent_runs = [r for r in await log_rows(env.pool, REGION, "properties")
                   if r["trigger"] == "parent-of-reservations"]  # fmt: skip
    assert len(parent_runs) == 1
    row = (await log_rows(env.pool, REGION, "reservations"))[-1]
    assert row["records_rejected"] == 1
