"""Issue 15 on the real thing: ``breezeway-daemon serve`` with its listener, the simulator
delivering over HTTP, and the CLI as processes (``webhooks subscribe|list|unsubscribe``,
``status``, ``bundle``): events applied, forged ones refused or changing nothing (logged
and counted), and the secret in no output."""

from __future__ import annotations

import copy
import json
import signal
import tarfile
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import orjson

from support.cli import run_cli
from support.groundtruth import differences
from support.monitoring import ServedDaemon
from support.simenv import SimEnv
from support.webhooks import SECRET, table_digest


async def test_subscribed_daemon_applies_events_refuses_forgeries_and_keeps_its_secret(
    synced_env: SimEnv, clean_db: asyncpg.Pool, served_daemon, tmp_path: Path
) -> None:
    sim = synced_env.sim
    sim.rates.update({"properties": {"create": 0, "change": 0, "delete": 0},
                      "reservations": {"create": 0},
                      "tasks": {"change": 0.4, "create": 0.05, "delete": 0}})  # fmt: skip
    daemon: ServedDaemon = await served_daemon(webhook_secret=SECRET)
    env = daemon.env_file
    outputs: list[str] = []

    async def cli(*argv: str, code: int = 0) -> str:
        result = await run_cli(*argv, env_file=env)
        assert result.code == code, str(result)
        outputs.append(result.stdout + result.stderr)
        return result.stdout + result.stderr

    # Subscriptions: Breezeway's test event reaches the daemon; idempotent; secret masked.
    out = await cli("webhooks", "subscribe", "all", "--url", daemon.url)
    assert out.count("subscribed (id") == 4 and f"{daemon.url}/webhooks/***/task" in out
    assert (await cli("webhooks", "subscribe", "all", "--url", daemon.url)).count(
        "already subscribed"
    ) == 4
    assert (await cli("webhooks", "list")).count(": id ") == 4
    assert {s.url for s in sim.webhooks.subscriptions.values()} == {
        f"{daemon.url}/webhooks/{SECRET}/{kind}" for kind in ("task", "property-status")
    }
    unreachable = await cli("webhooks", "subscribe", "region_1", "--url", "http://127.0.0.1:9",
                            code=1)  # fmt: skip
    assert "test event" in unreachable and "BREEZEWAY_HTTP_LISTEN" in unreachable

    # The simulator's changes arrive as events and are applied: the tasks equal the truth.
    sim.advance(1)
    await sim.webhooks.drain(30)
    delivered = [e for e in sim.webhooks.log if e.outcome == "delivered"]
    assert len(delivered) == len(sim.webhooks.log) > 5
    scrape = await daemon.until_scraped(
        lambda s: s.value("breezeway_webhook_events_processed_total") == len(delivered)
    )
    assert scrape.value("breezeway_webhook_events_received_total", kind="task") == len(delivered)
    assert await differences(clean_db, sim, synced_env.regions, ("tasks",)) == []

    # Forgeries change no row; each is logged and counted.
    company = sim.companies[0].company_id
    truth = sim.truth(company, "tasks")
    task = copy.deepcopy(truth[min(truth)])
    moved = datetime.fromisoformat(task["updated_at"]) + timedelta(minutes=5)
    forged = dict(task, name="forged", updated_at=moved.isoformat())

    def event(record: dict, name: str = "task-updated", **extra: object) -> bytes:
        return orjson.dumps({"event": name, "company_id": company, "task_id": record["id"],
                             "updated_at": record["updated_at"], "task": record, **extra})  # fmt: skip

    before = await table_digest(clean_db)
    processed = scrape.value("breezeway_webhook_events_processed_total") or 0
    async with httpx.AsyncClient(base_url=daemon.url, timeout=10) as http:

        async def post(body: bytes, secret: str = SECRET) -> int:
            return (await http.post(f"/webhooks/{secret}/task", content=body)).status_code

        answers = [
            await post(event(forged), secret="w" * len(SECRET)),
            await post(event(forged, company_id=999_999)),
            await post(b'{"event": "task-updated", "pad": "' + b"x" * 300_000 + b'"}'),
            await post(b"{not json"),
            await post(event(dict(task, name="older", updated_at="2001-01-01T00:00:00"))),
            await post(event(task, "task-deleted", task=None)),
        ]
    assert answers == [404, 422, 413, 400, 200, 200]
    scrape = await daemon.until_scraped(
        lambda s: s.value("breezeway_webhook_events_processed_total") == processed + 2
    )
    assert await table_digest(clean_db) == before
    assert scrape.value("breezeway_webhook_events_processed_total", outcome="unchanged") == 1
    assert scrape.value("breezeway_webhook_events_processed_total", outcome="kept") == 1
    for reason in ("wrong_secret", "unknown_company", "too_large", "not_json"):
        assert scrape.value("breezeway_webhook_events_refused_total", reason=reason) == 1, reason
    refused = [e for e in daemon.events if e.get("event") == "webhook_refused"]
    assert sorted(e["reason"] for e in refused) == [
        "not_json", "too_large", "unknown_company", "wrong_secret"
    ]  # fmt: skip
    for name in ("webhook_event_stale", "webhook_delete_not_confirmed"):
        assert [e["task_id"] for e in daemon.events if e.get("event") == name] == [task["id"]]

    # status shows the events per region (text) and per kind on its pairs (--json); it
    # exits 1 as only properties and tasks were ever synced.
    text = await cli("status", code=1)
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.strip()}
    assert rows["webhooks"][:3] == ["webhooks", "last", "event"]
    assert rows["region_1"][-3:] == ["0", "0", "0"]  # pending, failed, rejected
    as_json = await run_cli("status", "--json", env_file=env)
    outputs.append(as_json.stdout + as_json.stderr)
    pairs = json.loads(as_json.stdout)
    shown = {(p["region"], p["entity"]): p.get("webhooks") for p in pairs}
    assert shown[("region_1", "tasks")]["pending"] == 0
    assert shown[("region_1", "tasks")]["last_event_at"] is not None
    assert shown[("region_1", "properties")]["kind"] == "property-status"
    assert shown[("region_1", "people")] is None

    removed = await cli("webhooks", "unsubscribe", "all")
    assert removed.count("removed (id") == 4 and sim.webhooks.subscriptions == {}
    assert "no subscriptions to remove" in await cli("webhooks", "unsubscribe", "all")

    out_file = tmp_path / "bundle.tar.gz"
    await cli("bundle", "--out", str(out_file))
    assert await daemon.stop() == 0
    with tarfile.open(out_file) as tar:
        for member in tar.getmembers():
            if member.isfile():
                assert SECRET.encode() not in tar.extractfile(member).read(), member.name
    for text in [*outputs, *daemon.raw_lines]:
        assert SECRET not in text


async def test_a_reload_rotates_the_secret_and_enabling_webhooks_needs_a_restart(
    sim_env: SimEnv, served_daemon
) -> None:
    rotated = "rotated-webhook-secret-0123456789abcdef"  # obviously fake
    test_event = b'{"event": "test_webhook_event"}'
    daemon: ServedDaemon = await served_daemon(webhook_secret=SECRET)
    names = [e.get("event") for e in daemon.events]
    assert names.index("webhook_receiver_on") < names.index("daemon_ready")
    daemon.env_file.write_text(daemon.env_file.read_text().replace(SECRET, rotated))
    daemon.signal(signal.SIGHUP)
    await daemon.wait_event("config_reloaded")
    async with httpx.AsyncClient(base_url=daemon.url, timeout=10) as http:
        new = await http.post(f"/webhooks/{rotated}/task", content=test_event)
        old = await http.post(f"/webhooks/{SECRET}/task", content=test_event)
    assert (new.status_code, old.status_code) == (200, 404)

    off: ServedDaemon = await served_daemon()
    assert "webhook_receiver_on" not in [e.get("event") for e in off.events]
    off.env_file.write_text(off.env_file.read_text() + f"BREEZEWAY_WEBHOOK_SECRET={rotated}\n")
    off.signal(signal.SIGHUP)
    warning = off.events[await off.wait_event("config_change_needs_restart")]
    assert warning["settings"] == ["webhook_secret"]
    for text in [*daemon.raw_lines, *off.raw_lines]:
        assert SECRET not in text and rotated not in text
