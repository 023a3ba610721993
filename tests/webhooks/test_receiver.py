"""The receiver: forged and broken deliveries change nothing, are logged and counted; an
accepted event is committed before the answer, and a database that cannot store it in
time gets a 503; the secret appears in no log line."""

from __future__ import annotations

import asyncio
import copy
import time
from datetime import datetime, timedelta

import asyncpg
import pytest
import structlog

from breezeway_daemon.config import Settings
from breezeway_daemon.redact import configured_secrets
from breezeway_daemon.webhooks.store import EventStore
from breezeway_sim import Simulator

from support.webhooks import SECRET, Hooks, hooks_for, table_digest


def newer(task: dict) -> dict:
    moment = datetime.fromisoformat(task["updated_at"]) + timedelta(minutes=5)
    return dict(task, name="forged", updated_at=moment.isoformat())


def first_task(hooks: Hooks) -> dict:
    truth = hooks.sim.truth(hooks.sim.companies[0].company_id, "tasks")
    return copy.deepcopy(truth[min(truth)])


async def test_the_test_event_answers_200_and_stores_nothing(hooks: Hooks) -> None:
    for kind in ("task", "property-status"):
        answer = await hooks.post(kind, {"event": "test_webhook_event"})
        assert answer.status_code == 200
    assert await hooks.pool.fetchval("SELECT count(*) FROM breezeway.webhook_events") == 0


async def test_an_accepted_event_is_committed_before_the_answer(hooks: Hooks) -> None:
    task = newer(first_task(hooks))
    answer = await hooks.post("task", hooks.task_event(task))
    assert answer.status_code == 200
    # Seen from another connection at once: committed, not merely written.
    conn = await asyncpg.connect(hooks.settings.dsn())
    try:
        row = await conn.fetchrow("SELECT * FROM breezeway.webhook_events")
    finally:
        await conn.close()
    assert (row["region_code"], row["kind"], row["entity_id"]) == ("region_1", "task", task["id"])
    assert row["event_name"] == "task-updated" and row["processed_at"] is None
    assert row["updated_at"] == datetime.fromisoformat(task["updated_at"])


async def test_forged_and_broken_deliveries_change_nothing(hooks: Hooks) -> None:
    task = first_task(hooks)
    other_company = hooks.task_event(newer(task), company_id=999_999)
    older = dict(task, name="forged older", updated_at="2001-01-01T00:00:00")
    truth = hooks.sim.truth(hooks.sim.companies[0].company_id, "tasks")
    second = truth[sorted(truth)[1]]
    still_there = hooks.task_event(second, "task-deleted", task=None)
    before = await table_digest(hooks.pool)
    with structlog.testing.capture_logs() as logs:
        wrong = await hooks.post("task", hooks.task_event(newer(task)), secret="x" * len(SECRET))
        near = await hooks.post("task", hooks.task_event(newer(task)), secret=SECRET[:-1] + "Q")
        unknown = await hooks.post("task", other_company)
        no_company = await hooks.post("task", dict(hooks.task_event(newer(task)), company_id=None))
        big = await hooks.post(
            "task", b'{"event": "task-updated", "pad": "' + b"x" * 300_000 + b'"}'
        )
        not_json = await hooks.post("task", b"{not json")
        not_object = await hooks.post("task", b"[1, 2]")
        no_id = await hooks.post("task", {"event": "task-updated", "company_id": 1001})
        kind = await hooks.http.post(f"/webhooks/{SECRET}/reservations", content=b"{}")
        stale = await hooks.post("task", hooks.task_event(older))
        deleted = await hooks.post("task", still_there)
    assert [wrong.status_code, near.status_code] == [404, 404]
    assert [unknown.status_code, no_company.status_code] == [422, 422]
    assert big.status_code == 413
    assert [not_json.status_code, not_object.status_code, no_id.status_code] == [400, 400, 422]
    assert kind.status_code == 404
    # The last two are well-formed: stored, then applied never blindly.
    assert [stale.status_code, deleted.status_code] == [200, 200]
    await hooks.apply_all()
    assert await table_digest(hooks.pool) == before
    outcomes = [o for _, o, _ in await hooks.outcomes()]
    assert outcomes == ["unchanged", "kept"]
    refused = hooks.receiver.counters.refused
    assert refused == {"wrong_secret": 2, "unknown_company": 2, "too_large": 1, "not_json": 1,
                       "not_object": 1, "no_id": 1, "unknown_kind": 1}  # fmt: skip
    refusals = [e for e in logs if e["event"] == "webhook_refused"]
    assert len(refusals) == 9
    assert all(e["log_level"] == "warning" and e["peer"] == "127.0.0.1" for e in refusals)
    assert SECRET not in repr(logs)


async def test_a_slow_database_gets_a_503_within_the_budget(hooks: Hooks) -> None:
    hooks.receiver.store.timeout_s = 0.5
    task = newer(first_task(hooks))
    blocker = await asyncpg.connect(hooks.settings.dsn())
    try:
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("LOCK TABLE breezeway.webhook_events IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with structlog.testing.capture_logs() as logs:
            answer = await hooks.post("task", hooks.task_event(task))
        took = time.monotonic() - started
        await transaction.rollback()
    finally:
        await blocker.close()
    assert answer.status_code == 503
    assert took < 2
    assert [e["event"] for e in logs] == ["webhook_not_stored"]
    assert hooks.receiver.counters.store_failures == 1


async def test_an_unreachable_database_gets_a_503(hooks: Hooks) -> None:
    closed = await asyncpg.create_pool(hooks.settings.dsn(), min_size=1, max_size=1)
    await closed.close()
    hooks.receiver.store = EventStore(closed, 1)
    answer = await hooks.post("task", hooks.task_event(newer(first_task(hooks))))
    assert answer.status_code == 503


def test_the_secret_is_masked_like_every_configured_secret(hooks: Hooks) -> None:
    assert SECRET in configured_secrets(hooks.settings)
    assert SECRET not in repr(hooks.settings) and SECRET not in str(hooks.settings.masked())


@pytest.mark.parametrize("bad", ["short", "has/a/slash-" + "x" * 30, "x" * 129])
def test_a_weak_or_unsafe_secret_is_refused(bad: str) -> None:
    from pathlib import Path

    from breezeway_daemon.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="BREEZEWAY_WEBHOOK_SECRET"):
        load_settings(Path("/nonexistent/x.env"), webhook_secret=bad)


async def test_events_arriving_together_are_all_stored(hooks: Hooks) -> None:
    task = first_task(hooks)
    bodies = [
        hooks.task_event(dict(newer(task), name=f"v{n}", updated_at=f"2030-01-01T00:00:{n:02d}"))
        for n in range(30)
    ]
    answers = await asyncio.gather(*(hooks.post("task", b) for b in bodies))
    assert {a.status_code for a in answers} == {200}
    await hooks.apply_all()
    name = await hooks.pool.fetchval(
        "SELECT name FROM breezeway.tasks WHERE region_code = 'region_1' AND id = $1", task["id"]
    )
    assert name == "v29"


async def test_fields_never_stored_leave_the_event_before_it_is_stored(
    clean_db: asyncpg.Pool, base_settings: Settings
) -> None:
    """BREEZEWAY_DROP_FIELDS holds for webhook payloads too: not in the event, not in the row."""
    sim = Simulator(companies=1, scale="small", seed=37)
    async with hooks_for(base_settings, sim, drop_fields="tasks.report_url,tasks.summary") as hooks:
        task = newer(first_task(hooks))
        task["report_url"], task["summary"] = "https://reports.example.com/secret-7", "private-9"
        assert (await hooks.post("task", hooks.task_event(task))).status_code == 200
        body = await hooks.pool.fetchval("SELECT body FROM breezeway.webhook_events")
        assert b"secret-7" not in body and b"private-9" not in body
        assert task["name"].encode() in body, "the rest of the task is kept"
        await hooks.apply_all()
        raw = await hooks.pool.fetchval(
            "SELECT raw::text FROM breezeway.tasks WHERE id = $1", task["id"]
        )
        assert "forged" in raw and "secret-7" not in raw and "report_url" not in raw
