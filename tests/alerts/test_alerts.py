"""Alerts against a real SMTP server (aiosmtpd) and the real alert history tables."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import structlog.testing

from breezeway_daemon.alerts import Alerts, format_record, parse_alerts_log
from breezeway_daemon.config import Settings
from breezeway_daemon.db.runs import RunCounts, StuckRun
from breezeway_daemon.errors import ErrorKind
from breezeway_daemon.redact import scrub
from breezeway_daemon.sync import RunResult

from support.alerts import RECIPIENTS, SECRETS, SMTP_PASSWORD, SMTP_USER, logged
from support.mail import Mailbox, free_port

_run_ids = iter(range(1000, 10_000))


def failed(
    region: str = "nashville",
    entity: str = "properties",
    kind: ErrorKind = ErrorKind.API,
    error: str = "GET /property: 503 Service Unavailable after 5 attempts",
    **counts: int,
) -> RunResult:
    return RunResult(
        region, entity, "failed", run_id=next(_run_ids), error=error, error_kind=kind,
        duration_s=42.5, counts=RunCounts(**counts),
    )  # fmt: skip


def succeeded(region: str = "nashville", entity: str = "properties", **fields: Any) -> RunResult:
    counts = fields.pop("counts", {"records_processed": 120, "api_calls_made": 3})
    values: dict[str, Any] = {"duration_s": 12.0}
    values.update(fields)
    return RunResult(
        region, entity, "success", run_id=next(_run_ids), counts=RunCounts(**counts), **values
    )


# --- failures ---------------------------------------------------------------------
async def test_failure_mails_one_alert_with_details_and_remedy(
    alerts: Alerts, mailbox: Mailbox, settings: Settings
) -> None:
    result = failed(records_processed=200, records_new=7, api_calls_made=9)

    await alerts.run_finished(result)

    assert mailbox.subjects == ["🚨 ETL FAILURE: nashville/properties"]
    assert mailbox.envelopes == [("breezeway@example.com", list(RECIPIENTS))]
    assert mailbox.logins == [(SMTP_USER, SMTP_PASSWORD)]
    body = mailbox.body()
    assert "503 Service Unavailable after 5 attempts" in body
    assert f"Run id: {result.run_id}" in body
    assert "Duration: 42.5 s" in body
    assert "processed 200, new 7" in body and "API calls: 9" in body
    assert "B. API Connection Error" in body
    assert "breezeway-daemon token nashville" in body
    assert "breezeway-daemon run nashville properties" in body
    records = logged(settings)
    assert [r.subject for r in records] == ["🚨 ETL FAILURE: nashville/properties"]
    assert "mail: sent to ops@example.com, oncall@example.com" in records[0].body


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (ErrorKind.DATABASE, ['-c "SELECT 1;"', "pg_stat_activity", "run nashville tasks"]),
        (
            ErrorKind.TOKEN,
            [
                "breezeway-daemon token nashville --refresh",
                "SET access_token = NULL, refresh_token = NULL, "
                "token_expires_at = NOW() - INTERVAL '1 hour' WHERE region_code = 'nashville'",
                "BREEZEWAY_REGIONS__NASHVILLE__CLIENT_SECRET",
            ],
        ),
        (
            ErrorKind.DATA,
            ["breezeway.rejected_records", "breezeway-daemon run nashville properties\n"],
        ),
        (ErrorKind.OTHER, ["breezeway-daemon status", "journalctl -u breezeway-daemon"]),
    ],
)
async def test_failure_body_has_the_remedy_for_its_kind(
    alerts: Alerts, mailbox: Mailbox, kind: ErrorKind, expected: list[str]
) -> None:
    await alerts.run_finished(failed(entity="tasks", kind=kind))

    body = mailbox.body()
    for text in expected:
        assert text in body, text
    assert "python3" not in body and "/root/Breezeway" not in body


async def test_repeated_failure_inside_quiet_period_is_logged_not_mailed(
    alerts: Alerts, mailbox: Mailbox, settings: Settings
) -> None:
    await alerts.run_finished(failed())
    await alerts.run_finished(failed())
    # Another pair, and another kind of alert for the same pair, are not quietened.
    await alerts.run_finished(failed(region="austin"))
    await alerts.token_failure("nashville", "Invalid client credentials")

    assert mailbox.subjects == [
        "🚨 ETL FAILURE: nashville/properties",
        "🚨 ETL FAILURE: austin/properties",
        "🚨 ETL TOKEN FAILURE: nashville",
    ]
    records = logged(settings)
    assert [r.subject for r in records] == [
        "🚨 ETL FAILURE: nashville/properties",
        "🚨 ETL FAILURE: nashville/properties",
        "🚨 ETL FAILURE: austin/properties",
        "🚨 ETL TOKEN FAILURE: nashville",
    ]
    assert "mail: not sent (quiet period" in records[1].body


async def test_a_new_alerts_instance_respects_the_quiet_period_from_history(
    alerts: Alerts, mailbox: Mailbox, settings: Settings, alert_db: asyncpg.Pool
) -> None:
    await alerts.run_finished(failed())
    await Alerts(settings, alert_db).run_finished(failed())  # e.g. an operator's manual run

    assert len(mailbox.subjects) == 1


async def test_failure_is_mailed_again_after_the_quiet_period(
    alerts: Alerts, mailbox: Mailbox, alert_db: asyncpg.Pool
) -> None:
    await alerts.run_finished(failed())
    await alert_db.execute(
        "UPDATE breezeway.alert_history SET mailed_at = mailed_at - interval '6 hours 1 minute'"
    )
    await alerts.run_finished(failed())

    assert mailbox.subjects == ["🚨 ETL FAILURE: nashville/properties"] * 2


async def test_skipped_run_is_not_alerted(
    alerts: Alerts, mailbox: Mailbox, settings: Settings
) -> None:
    await alerts.run_finished(RunResult("nashville", "tasks", "skipped", error="locked"))

    assert mailbox.subjects == []
    assert logged(settings) == []


# --- batches ------------------------------------------------------------------------
async def test_batch_outage_gives_one_summary_listing_every_failure(
    alerts: Alerts, mailbox: Mailbox, settings: Settings
) -> None:
    regions = ["nashville", "austin", "smoky", "mammoth"]
    results = [failed(region=r, entity=e) for r in regions for e in ("properties", "tags")]
    results.append(succeeded(region="nashville", entity="people"))
    for result in results:
        await alerts.run_finished(result, in_batch=True)
    assert mailbox.subjects == []  # folded until the batch ends

    await alerts.batch_finished("Hourly ETL", results)

    assert mailbox.subjects == ["📊 Hourly ETL Summary: 8 failures"]
    body = mailbox.body()
    assert "8 of 9 runs failed" in body
    for result in results[:-1]:
        assert f"{result.region}/{result.entity}: run {result.run_id}" in body
    assert "nashville/people" not in body
    assert "B. API Connection Error" in body
    subjects = [r.subject for r in logged(settings)]
    assert subjects.count("🚨 ETL FAILURE: austin/tags") == 1
    assert subjects[-1] == "📊 Hourly ETL Summary: 8 failures"

    # The next hour, the same outage: logged, not mailed again.
    again = [failed(region=r, entity=e) for r in regions for e in ("properties", "tags")]
    for result in again:
        await alerts.run_finished(result, in_batch=True)
    await alerts.batch_finished("Hourly ETL", again)
    assert len(mailbox.subjects) == 1
    # A new failure brings a summary again, marking the old ones as already reported.
    third = [*again, failed(region="smoky", entity="people")]
    for result in third:
        await alerts.run_finished(result, in_batch=True)
    await alerts.batch_finished("Daily ETL", third)
    assert mailbox.subjects[1:] == ["📊 Daily ETL Summary: 9 failures"]
    assert mailbox.body().count("already reported at") == 8


async def test_batch_with_one_failure_mails_that_failure_under_the_runbooks_subject(
    alerts: Alerts, mailbox: Mailbox, settings: Settings, alert_db: asyncpg.Pool
) -> None:
    failure = failed(records_processed=5, api_calls_made=2)
    results = [failure, succeeded(region="austin")]
    for result in results:
        await alerts.run_finished(result, in_batch=True)
    assert mailbox.subjects == []

    await alerts.batch_finished("Hourly ETL", results)

    assert mailbox.subjects == ["🚨 ETL FAILURE: nashville/properties"]
    assert mailbox.messages[0]["X-Breezeway-Alert"] == "failure"
    body = mailbox.body()
    assert body.startswith("Run of nashville/properties failed.\n")
    assert "503 Service Unavailable after 5 attempts" in body
    assert f"Run id: {failure.run_id}" in body and "B. API Connection Error" in body
    assert "Summary" not in body and "austin" not in body
    rows = await alert_db.fetch("SELECT kind, run_id, mail_status FROM breezeway.alert_history")
    assert [tuple(row) for row in rows] == [("failure", failure.run_id, "sent")]
    records = logged(settings)
    assert [r.subject for r in records] == ["🚨 ETL FAILURE: nashville/properties"] * 2
    assert records[0].body.endswith("mail: folded into the batch's digest (mailed after the batch)")
    assert records[1].body.endswith("mail: sent to ops@example.com, oncall@example.com")

    # The next batch, the same failure: quiet. Two failures: one summary again.
    again = failed()
    await alerts.run_finished(again, in_batch=True)
    await alerts.batch_finished("Hourly ETL", [again])
    assert len(mailbox.subjects) == 1
    two = [failed(), failed(region="austin"), succeeded(region="smoky")]
    for result in two:
        await alerts.run_finished(result, in_batch=True)
    await alerts.batch_finished("Hourly ETL", two)
    assert mailbox.subjects[1:] == ["📊 Hourly ETL Summary: 2 failures"]
    assert mailbox.messages[1]["X-Breezeway-Alert"] == "summary"
    summary = mailbox.body()
    assert f"nashville/properties: run {two[0].run_id}" in summary
    assert f"austin/properties: run {two[1].run_id}" in summary
    assert "(already reported at" in summary and "smoky" not in summary


async def test_one_failure_mailed_on_its_own_is_not_mailed_again_by_its_batch(
    alerts: Alerts, mailbox: Mailbox
) -> None:
    results = [failed(), succeeded(region="austin")]
    for result in results:
        await alerts.run_finished(result)  # not folded
    await alerts.batch_finished("Manual ETL", results)

    assert mailbox.subjects == ["🚨 ETL FAILURE: nashville/properties"]


async def test_batch_without_failures_sends_no_summary(
    alerts: Alerts, mailbox: Mailbox, settings: Settings
) -> None:
    results = [succeeded(region=r) for r in ("nashville", "austin")]
    for result in results:
        await alerts.run_finished(result, in_batch=True)
    await alerts.batch_finished("Daily ETL", results)

    assert mailbox.subjects == []
    assert logged(settings) == []


async def test_summary_is_mailed_even_when_its_runs_were_mailed_alone(
    alerts: Alerts, mailbox: Mailbox
) -> None:
    results = [failed(region="nashville"), failed(region="austin")]
    for result in results:
        await alerts.run_finished(result)  # not folded
    await alerts.batch_finished("Hourly ETL", results)

    assert mailbox.subjects == [
        "🚨 ETL FAILURE: nashville/properties",
        "🚨 ETL FAILURE: austin/properties",
        "📊 Hourly ETL Summary: 2 failures",
    ]


async def test_batch_recoveries_and_warnings_come_as_one_digest_each(
    alerts: Alerts, mailbox: Mailbox
) -> None:
    regions = ["nashville", "austin", "smoky"]
    outage = [failed(region=r) for r in regions]
    for result in outage:
        await alerts.run_finished(result, in_batch=True)
    await alerts.batch_finished("Hourly ETL", outage)
    back = [succeeded(region=r, counts={"records_rejected": 2}) for r in regions]
    for result in back:
        await alerts.run_finished(result, in_batch=True)
    await alerts.batch_finished("Hourly ETL", back)

    assert mailbox.subjects == [
        "📊 Hourly ETL Summary: 3 failures",
        "⚠️ ETL WARNING: 3 runs in Hourly ETL",
        "✅ ETL RECOVERED: 3 pairs in Hourly ETL",
    ]
    for region in regions:
        assert f"✅ ETL RECOVERED: {region}/properties" in mailbox.body()


# --- warnings -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (succeeded(duration_s=11 * 60), "It took 11 min 0 s, over the 10-minute threshold."),
        (
            succeeded(entity="tasks", counts={"api_calls_made": 601}),
            "It made 601 API calls, over the budget of 600 for tasks.",
        ),
        (
            succeeded(counts={"records_processed": 10, "records_rejected": 3}),
            "3 records were rejected",
        ),
    ],
    ids=["duration", "api_calls", "rejected"],
)
async def test_warning_for_each_cause(
    make_settings: Callable[..., Settings],
    alert_db: asyncpg.Pool,
    mailbox: Mailbox,
    result: RunResult,
    expected: str,
) -> None:
    alerts = Alerts(make_settings(warn_api_calls={"tasks": 600}), alert_db)

    await alerts.run_finished(result)

    assert mailbox.subjects == [f"⚠️ ETL WARNING: nashville/{result.entity}"]
    assert expected in mailbox.body()
    assert f"Run {result.run_id} of nashville/{result.entity} succeeded, with warnings" in (
        mailbox.body()
    )


async def test_warning_when_a_full_listing_shrinks_under_the_ratio(
    alerts: Alerts, mailbox: Mailbox
) -> None:
    await alerts.run_finished(succeeded(listing_size=100, mode="full"))
    await alerts.run_finished(succeeded(listing_size=60, mode="full"))  # 60% of 100: fine
    assert mailbox.subjects == []
    await alerts.run_finished(
        succeeded(listing_size=29, mode="full", counts={"records_deleted": 31})
    )

    assert mailbox.subjects == ["⚠️ ETL WARNING: nashville/properties"]
    body = mailbox.body()
    assert "returned 29 records, under 50% of the previous full listing (60 records)" in body
    assert "breezeway-daemon run nashville properties --full" in body


async def test_listing_sizes_are_per_pair_and_shared_through_the_database(
    alerts: Alerts, mailbox: Mailbox, settings: Settings, alert_db: asyncpg.Pool
) -> None:
    await alerts.run_finished(succeeded(listing_size=100))
    await alerts.run_finished(succeeded(region="austin", listing_size=10))
    await Alerts(settings, alert_db).run_finished(succeeded(listing_size=40))

    assert mailbox.subjects == ["⚠️ ETL WARNING: nashville/properties"]


async def test_no_warning_for_a_clean_success(alerts: Alerts, mailbox: Mailbox) -> None:
    await alerts.run_finished(succeeded(duration_s=599, listing_size=5))
    assert mailbox.subjects == []


# --- recoveries ---------------------------------------------------------------------
async def test_recovery_after_failure_then_nothing_more(
    alerts: Alerts, mailbox: Mailbox, settings: Settings, alert_db: asyncpg.Pool
) -> None:
    failure = failed()
    await alerts.run_finished(failure)
    fixed = succeeded()
    await alerts.run_finished(fixed)
    await alerts.run_finished(succeeded())

    assert mailbox.subjects == [
        "🚨 ETL FAILURE: nashville/properties",
        "✅ ETL RECOVERED: nashville/properties",
    ]
    assert f"succeeded again (run {fixed.run_id})" in mailbox.body()
    kinds = await alert_db.fetch(
        "SELECT kind, run_id, mail_status FROM breezeway.alert_history ORDER BY id"
    )
    assert [tuple(row) for row in kinds] == [
        ("failure", failure.run_id, "sent"),
        ("recovered", fixed.run_id, "sent"),
    ]


async def test_recovery_is_found_by_another_process_through_history(
    alerts: Alerts, mailbox: Mailbox, settings: Settings, alert_db: asyncpg.Pool
) -> None:
    await alerts.run_finished(failed(entity="tasks"))
    manual = Alerts(settings, alert_db)
    await manual.run_finished(succeeded(entity="tasks"))
    await alerts.run_finished(succeeded(entity="tasks"))  # the daemon: already recovered

    assert mailbox.subjects == [
        "🚨 ETL FAILURE: nashville/tasks",
        "✅ ETL RECOVERED: nashville/tasks",
    ]


async def test_success_without_a_previous_failure_is_not_a_recovery(
    alerts: Alerts, mailbox: Mailbox, settings: Settings
) -> None:
    await alerts.run_finished(failed(region="austin"))
    await alerts.run_finished(succeeded(region="nashville"))

    assert mailbox.subjects == ["🚨 ETL FAILURE: austin/properties"]


# --- stuck runs and tokens --------------------------------------------------------------
def stuck_row(
    region: str, entity: str, run_id: int, reason: str = "no heartbeat for 9 minutes"
) -> StuckRun:
    now = datetime.now(UTC)
    return StuckRun(
        run_id=run_id, region=region, entity=entity, owner_host="etl-host-2", owner_pid=4242,
        started_at=now - timedelta(minutes=70), heartbeat_at=now - timedelta(minutes=9), reason=reason,
    )  # fmt: skip


async def test_stuck_runs_alert_then_recover(alerts: Alerts, mailbox: Mailbox) -> None:
    await alerts.stuck_runs([stuck_row("smoky", "tasks", 77)])
    await alerts.stuck_runs([stuck_row("smoky", "people", 78), stuck_row("austin", "tags", 79)])
    await alerts.run_finished(succeeded(region="smoky", entity="tasks"))

    assert mailbox.subjects == [
        "🚨 ETL STUCK: smoky/tasks",
        "🚨 ETL STUCK: 2 runs",
        "✅ ETL RECOVERED: smoky/tasks",
    ]
    body = mailbox.body(1)
    assert "smoky/people: run 78" in body and "austin/tags: run 79" in body
    assert "etl-host-2 pid 4242" in body and "no heartbeat for 9 minutes" in body


async def test_token_failure_alert_and_its_quiet_period(
    alerts: Alerts, mailbox: Mailbox, settings: Settings
) -> None:
    await alerts.token_failure("mammoth", RuntimeError("401 Unauthorized"))
    await alerts.token_failure("mammoth", "401 Unauthorized")

    assert mailbox.subjects == ["🚨 ETL TOKEN FAILURE: mammoth"]
    assert "breezeway-daemon token mammoth --refresh" in mailbox.body()
    assert len(logged(settings)) == 2


# --- broken transports ------------------------------------------------------------------
async def test_smtp_down_still_logs_and_the_next_alert_tries_again(
    make_settings: Callable[..., Settings], alert_db: asyncpg.Pool, mailbox: Mailbox
) -> None:
    down = make_settings(smtp_port=free_port())  # nothing listens there
    alerts = Alerts(down, alert_db)

    await alerts.run_finished(failed())

    records = logged(down)
    assert [r.subject for r in records] == ["🚨 ETL FAILURE: nashville/properties"]
    assert "mail: NOT sent:" in records[0].body
    status = await alert_db.fetchval("SELECT mail_status FROM breezeway.alert_history")
    assert status == "failed"
    # The server is back: the same failure is mailed (an undelivered mail does not quieten).
    alerts.update_settings(make_settings())
    await alerts.run_finished(failed())
    assert mailbox.subjects == ["🚨 ETL FAILURE: nashville/properties"]


async def test_smtp_down_during_a_batch_returns_normally(
    make_settings: Callable[..., Settings], alert_db: asyncpg.Pool
) -> None:
    down = make_settings(smtp_port=free_port())
    alerts = Alerts(down, alert_db)
    results = [failed(), failed(region="austin")]
    for result in results:
        await alerts.run_finished(result, in_batch=True)
    await alerts.batch_finished("Hourly ETL", results)

    assert [r.subject for r in logged(down)][-1] == "📊 Hourly ETL Summary: 2 failures"


async def test_unwritable_alerts_log_does_not_raise_and_mail_still_goes(
    make_settings: Callable[..., Settings],
    alert_db: asyncpg.Pool,
    mailbox: Mailbox,
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings = make_settings(alerts_log=blocker / "alerts.log")
    alerts = Alerts(settings, alert_db)

    with structlog.testing.capture_logs() as events:
        await alerts.run_finished(failed())
        await alerts.stuck_runs([stuck_row("smoky", "tasks", 5)])

    assert mailbox.subjects == ["🚨 ETL FAILURE: nashville/properties", "🚨 ETL STUCK: smoky/tasks"]
    assert [e["event"] for e in events if e["log_level"] == "error"] == [
        "alerts_log_unwritable",
        "alerts_log_unwritable",
    ]
    # Recorded after the log write failed: the alert went on.
    kinds = await alert_db.fetch(
        "SELECT kind, mail_status FROM breezeway.alert_history ORDER BY id"
    )
    assert [tuple(row) for row in kinds] == [("failure", "sent"), ("stuck", "sent")]


async def test_a_fault_inside_the_alerts_is_logged_never_raised(
    alerts: Alerts, mailbox: Mailbox
) -> None:
    with structlog.testing.capture_logs() as events:
        await alerts.stuck_runs([None])  # type: ignore[list-item]  # not a row
        await alerts.batch_finished("Hourly ETL", [None])  # type: ignore[list-item]
        await alerts.run_finished(failed())  # the next alert goes out

    failed_alerts = [e for e in events if e["event"] == "alert_failed"]
    assert [e["what"] for e in failed_alerts] == ["stuck_runs", "batch_finished"]
    assert mailbox.subjects == ["🚨 ETL FAILURE: nashville/properties"]


async def test_without_smtp_alerts_are_only_logged(
    make_settings: Callable[..., Settings], alert_db: asyncpg.Pool, mailbox: Mailbox
) -> None:
    settings = make_settings(smtp_host=None)
    await Alerts(settings, alert_db).run_finished(failed())

    assert mailbox.subjects == []
    assert "mail: not sent (SMTP is not configured)" in logged(settings)[0].body


async def test_database_down_alerts_still_go_out_and_stay_quiet_from_memory(
    settings: Settings, mailbox: Mailbox
) -> None:
    pool = await asyncpg.create_pool(settings.dsn(), min_size=0, max_size=1)
    await pool.close()  # every call now fails
    alerts = Alerts(settings, pool)

    for _hour in range(2):
        # Runs that could not reach the database have no run row, so no run id.
        results = [failed(region=r, kind=ErrorKind.DATABASE) for r in ("nashville", "austin")]
        for result in results:
            result.run_id = None
            await alerts.run_finished(result, in_batch=True)
        await alerts.batch_finished("Hourly ETL", results)
    await alerts.run_finished(succeeded())

    assert mailbox.subjects == [
        "📊 Hourly ETL Summary: 2 failures",
        "✅ ETL RECOVERED: nashville/properties",
    ]
    assert len(logged(settings)) == 2 + 1 + 2 + 1 + 1


# --- secrets and the log format ------------------------------------------------------------
async def test_no_configured_secret_in_any_mail_or_the_log(
    make_settings: Callable[..., Settings], alert_db: asyncpg.Pool, mailbox: Mailbox
) -> None:
    settings = make_settings(warn_api_calls={"tasks": 1})
    alerts = Alerts(settings, alert_db)
    leaky = (
        f"401 Unauthorized: client_secret={SECRETS[1]} Authorization: Bearer abc.def.ghi "
        f"access_token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJl "
        f"connecting to postgresql://postgres:{SECRETS[2]}@db:5432/x password {SECRETS[0]}"
    )
    results = [failed(kind=kind, error=leaky) for kind in ErrorKind]
    for result in results:
        await alerts.run_finished(result, in_batch=True)
    await alerts.batch_finished("Hourly ETL", results)
    await alerts.run_finished(failed(region="austin", kind=ErrorKind.TOKEN, error=leaky))
    await alerts.token_failure("smoky", leaky)
    await alerts.stuck_runs([stuck_row("mammoth", "tasks", 3, reason=leaky)])
    await alerts.run_finished(succeeded(entity="tasks", counts={"api_calls_made": 5}))

    assert len(mailbox.raw) == 5
    text = settings.alerts_log_path.read_text(encoding="utf-8")
    mails = "\n".join(
        f"{message['Subject']}\n{message.get_content()}" for message in mailbox.messages
    )
    for where in (text, mails, b"\n".join(mailbox.raw).decode("utf-8", "replace")):
        for secret in (*SECRETS, "eyJhbGciOiJIUzI1NiJ9", "abc.def.ghi"):
            assert secret not in where
    assert "401 Unauthorized" in mails and "client_secret=***" in mails


def test_alerts_log_records_parse_back() -> None:
    at = datetime(2025, 6, 1, 3, 0, 12, tzinfo=UTC)
    text = format_record(at, "🚨 ETL FAILURE: a/b", "line one\n\n  indented\nmail: sent")
    text += format_record(at + timedelta(minutes=1), "📊 Hourly ETL Summary: 2 failures", "x")

    assert text.startswith("2025-06-01T03:00:12+00:00 🚨 ETL FAILURE: a/b\n    line one\n    \n")
    records = parse_alerts_log(text)
    assert [(r.at, r.subject) for r in records] == [
        (at, "🚨 ETL FAILURE: a/b"),
        (at + timedelta(minutes=1), "📊 Hourly ETL Summary: 2 failures"),
    ]
    assert records[0].body == "line one\n\n  indented\nmail: sent"


def test_scrub_keeps_the_runbook_sql_and_masks_values() -> None:
    sql = "SET access_token = NULL, refresh_token = NULL WHERE region_code = 'x'"
    assert scrub(sql) == sql
    assert scrub("refresh_token=abc123 and sec", ["sec"]) == "refresh_token=*** and ***"
