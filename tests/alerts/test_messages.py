"""The alerts' text, from run results alone: no SMTP server, no database."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from breezeway_daemon.alerts import AlertKind, messages
from breezeway_daemon.config import Settings, load_settings
from breezeway_daemon.db.runs import RunCounts, StuckRun
from breezeway_daemon.errors import ErrorKind
from breezeway_daemon.sync import RunResult


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        Path("/nonexistent/bw-test.env"),
        database_url="postgresql://ops:fake-pw@db.example:5433/breezeway",
        state_dir=tmp_path,
    )


def failure(region: str, entity: str, run_id: int | None, kind: ErrorKind) -> RunResult:
    return RunResult(region, entity, "failed", run_id=run_id, error="boom\n  twice",
                     error_kind=kind, duration_s=75, counts=RunCounts(api_calls_made=4))  # fmt: skip


def test_failure_says_what_failed_and_what_to_do(settings: Settings) -> None:
    alert = messages.failure(settings, failure("austin", "tasks", None, ErrorKind.DATABASE))

    assert alert.subject == "🚨 ETL FAILURE: austin/tasks"
    assert alert.header_label == "failure"
    assert [(e.kind, e.region, e.entity, e.error_kind) for e in alert.entries] == [
        (AlertKind.FAILURE, "austin", "tasks", "database")
    ]
    lines = alert.body.split("\n")
    assert lines[:5] == ["Run of austin/tasks failed.", "", "Error (database): boom twice",
                         "Run id: none (no run row)", "Mode: incremental"]  # fmt: skip
    assert "Duration: 1 min 15 s" in lines
    assert 'psql -h db.example -p 5433 -U ops -d breezeway -c "SELECT 1;"' in alert.body
    assert "fake-pw" not in alert.body


def test_summary_lists_every_failure_and_one_remedy_per_kind(settings: Settings) -> None:
    failures = [
        failure("austin", "tasks", 7, ErrorKind.API),
        failure("smoky", "tasks", 8, ErrorKind.API),
        failure("smoky", "people", 9, ErrorKind.TOKEN),
    ]
    entries = [messages.failure_entry(r, record=False) for r in failures]
    earlier = datetime(2025, 6, 1, 3, 0, tzinfo=UTC)

    alert = messages.summary(settings, "Hourly ETL", failures, 10, entries, [earlier, None, None])

    assert alert.subject == "📊 Hourly ETL Summary: 3 failures"
    assert alert.header_label == "summary" and alert.entries == entries
    body = alert.body
    assert "3 of 10 runs failed (2 not reported before, 1 already mailed" in body
    assert (
        "austin/tasks: run 7, api error, 1 min 15 s (already reported at 2025-06-01 03:00" in body
    )
    assert body.count("runbook: FAILURE ALERT, B. API") == 1
    assert body.count("runbook: FAILURE ALERT, C. Token") == 1


def test_stuck_runs_one_and_several() -> None:
    now = datetime.now(UTC)
    run = StuckRun(run_id=5, region="smoky", entity="tasks", owner_host="h", owner_pid=9,
                   started_at=now - timedelta(hours=2), heartbeat_at=None, reason="no heartbeat")  # fmt: skip

    one = messages.stuck_runs([run])
    two = messages.stuck_runs([run, dataclasses.replace(run, entity="people", run_id=6)])

    assert one.subject == "🚨 ETL STUCK: smoky/tasks"
    assert "Owner: h pid 9" in one.body and "last heartbeat: unknown time" in one.body
    assert two.subject == "🚨 ETL STUCK: 2 runs"
    assert [(e.kind, e.entity, e.run_id) for e in two.entries] == [
        (AlertKind.STUCK, "tasks", 5),
        (AlertKind.STUCK, "people", 6),
    ]
