"""Two hosts, one database: two daemons with the same configuration on one PostgreSQL.

Both are real ``breezeway-daemon serve`` processes against one simulator served over HTTP.
Batches are triggered by SIGUSR1 on both at the same moment, round after round: every region
and entity runs exactly once per round, never twice at the same time; the daemon that finds
a pair taken skips it quietly (no failure, no ``etl_sync_log`` row). Then one daemon is
SIGKILLed in the middle of a batch, and the other's next batch covers everything.
"""

from __future__ import annotations

import signal
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from breezeway_daemon.config import Settings
from breezeway_daemon.entities import ENTITY_NAMES
from breezeway_sim import EntityRates, Rates, Scale, Simulator, SimulatorServer

from support.cli import run_cli
from support.daemon import DaemonProcess, NotifySocket
from support.groundtruth import differences
from support.simenv import daemon_env_file_text, regions_for, write_private

SCALE = Scale(properties=8, reservations_per_property=3, tasks_per_property=6, people=8,
              supplies=6, tags=3)  # fmt: skip
ROUNDS = 3
# Records are created and changed between rounds, never deleted: deletions are found by
# full listings (the daily batch), and these rounds are hourly ones.
RATES = Rates(
    **{entity: EntityRates(create=0.05, change=0.1, delete=0.0) for entity in ENTITY_NAMES}
)


class Pair:
    """Two daemon processes on one env file, each with its own notify socket."""

    def __init__(self, env_file: Path, tmp_path: Path) -> None:
        self.sockets = [NotifySocket(tmp_path / f"notify-{n}.sock") for n in "ab"]
        self.daemons = [DaemonProcess(env_file, sock, {}) for sock in self.sockets]

    async def close(self) -> None:
        for daemon in self.daemons:
            await daemon.kill()
        for sock in self.sockets:
            sock.close()


@pytest.fixture
async def two_daemons(
    clean_db: asyncpg.Pool, base_settings: Settings, tmp_path: Path
) -> AsyncIterator[tuple[Simulator, Pair, Path]]:
    sim = Simulator(companies=2, scale=SCALE, seed=53, rates=RATES)
    # Pacing is not what this test is about: the daemons do not pace (settings_for), so the
    # simulator does not limit either (task details make more calls than one window allows).
    sim.faults.data_rate_limit_per_minute = None
    async with SimulatorServer(sim, port=0) as server:
        env_file = write_private(tmp_path / "breezeway.env", daemon_env_file_text(
            base_settings.dsn(), server.base_url, tmp_path, regions_for(sim),
            max_in_flight_per_credential=8, http_retry_budget_s=10,
            hourly_entities=",".join(ENTITY_NAMES), batch_size=20,
        ))  # fmt: skip
        pair = Pair(env_file, tmp_path)
        try:
            yield sim, pair, env_file
        finally:
            await pair.close()


async def max_run_id(pool: asyncpg.Pool) -> int:
    return await pool.fetchval("SELECT coalesce(max(id), 0) FROM breezeway.etl_sync_log")


async def batch_on_both(daemons: list[DaemonProcess]) -> list[dict]:
    """SIGUSR1 to every daemon at once; their ``batch_finished`` events."""
    after = [len(daemon.events) for daemon in daemons]
    for daemon in daemons:
        daemon.signal(signal.SIGUSR1)
    return [
        daemon.events[await daemon.wait_event("batch_finished", after=start)]
        for daemon, start in zip(daemons, after, strict=True)
    ]


def overlaps(rows: list[asyncpg.Record]) -> list[str]:
    """Runs of the same pair whose [started, completed] intervals overlap."""
    by_pair: dict[tuple[str, str], list[asyncpg.Record]] = defaultdict(list)
    for row in rows:
        by_pair[(row["region_code"], row["entity_type"])].append(row)
    found = []
    for pair, runs in by_pair.items():
        runs.sort(key=lambda row: row["sync_started_at"])
        for before, after in zip(runs, runs[1:], strict=False):
            if (
                before["sync_completed_at"] is None
                or before["sync_completed_at"] > after["sync_started_at"]
            ):
                found.append(f"{pair}: run {before['id']} and run {after['id']}")
    return found


async def test_two_daemons_run_each_pair_once_per_round_and_one_covers_for_the_other(
    two_daemons: tuple[Simulator, Pair, Path], clean_db: asyncpg.Pool
) -> None:
    sim, pair, env_file = two_daemons
    pool = clean_db
    pairs = {(region, entity) for region in ("region_1", "region_2") for entity in ENTITY_NAMES}
    a, b = pair.daemons

    # B starts while A is in the middle of a batch: B's start-up sweep (same host, another
    # live pid) and a watchdog run by hand must leave A's running runs alone.
    await a.start()
    await a.wait_event("daemon_ready")
    sim.faults.latency_s = 1.0  # A's batch lasts until B started and the sweep ran
    before = await max_run_id(pool)
    a.signal(signal.SIGUSR1)
    await a.wait_event("run_started")
    await b.start()
    b_ready = b.events[await b.wait_event("daemon_ready")]
    swept = await run_cli("watchdog", env_file=env_file)
    assert swept.code == 0 and "0 stuck run(s)" in swept.stdout, swept
    assert await pool.fetchval(
        "SELECT count(*) FROM breezeway.etl_sync_log WHERE sync_status = 'running'"
    ), "A's runs were live while B swept"
    sim.faults.latency_s = 0.0
    first = a.events[await a.wait_event("batch_finished")]
    assert first["failed"] == 0 and first["skipped"] == 0, first
    assert b_ready["timestamp"] < first["timestamp"]
    rows = await pool.fetch("SELECT * FROM breezeway.etl_sync_log WHERE id > $1", before)
    assert Counter(row["sync_status"] for row in rows) == {"success": len(pairs)}

    for round_number in range(ROUNDS):
        sim.advance(hours=0.5)
        before = await max_run_id(pool)
        # Signalled in turn first: either may win the round.
        finished = await batch_on_both([a, b] if round_number % 2 else [b, a])
        assert [event["failed"] for event in finished] == [0, 0], finished
        rows = await pool.fetch("SELECT * FROM breezeway.etl_sync_log WHERE id > $1", before)
        statuses = Counter(row["sync_status"] for row in rows)
        successes = Counter((row["region_code"], row["entity_type"]) for row in rows
                            if row["sync_status"] == "success")  # fmt: skip
        assert statuses == {"success": len(pairs)}, (round_number, statuses)
        assert set(successes) == pairs and set(successes.values()) == {1}, successes
        # What one did not run, the other skipped: together, each pair once.
        ran = sum(event["runs"] - event["skipped"] for event in finished)
        skipped = sum(event["skipped"] for event in finished)
        assert ran == len(pairs) and skipped == len(pairs), finished
        assert await differences(pool, sim, {"region_1": 1001, "region_2": 1002}) == []

    all_rows = await pool.fetch("SELECT * FROM breezeway.etl_sync_log")
    assert overlaps(all_rows) == []

    # B dies in the middle of a batch; A's next batches cover everything.
    sim.advance(hours=0.5)
    sim.faults.latency_s = 1.0
    mark = len(b.events)
    b.signal(signal.SIGUSR1)
    await b.wait_event("run_started", after=mark)
    await b.kill()
    sim.faults.latency_s = 0.0
    assert await pool.fetchval(
        "SELECT count(*) FROM breezeway.etl_sync_log WHERE sync_status = 'running' "
        "AND owner_pid = $1",
        b.proc.pid,  # type: ignore[union-attr]
    ), "B died in the middle of a run"
    sim.advance(hours=0.5)
    for _ in range(2):
        before = await max_run_id(pool)
        (finished,) = await batch_on_both([a])
        rows = await pool.fetch("SELECT * FROM breezeway.etl_sync_log WHERE id > $1", before)
        failures = [
            (r["region_code"], r["entity_type"], r["error_message"])
            for r in rows
            if r["sync_status"] != "success"
        ]
        assert finished["failed"] == 0 and finished["skipped"] == 0, (finished, failures)
        assert Counter(row["sync_status"] for row in rows) == {"success": len(pairs)}
    assert await differences(pool, sim, {"region_1": 1001, "region_2": 1002}) == []
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM breezeway.etl_sync_log WHERE sync_status = 'running'"
        )
        == 0
    )
    assert overlaps(await pool.fetch("SELECT * FROM breezeway.etl_sync_log")) == []
    a.signal(signal.SIGTERM)
    assert await a.wait_exit(30) == 0
