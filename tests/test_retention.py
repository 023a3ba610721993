"""Retention: the daemon's daily purge of run history, rejected records and alert history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from breezeway_daemon.retention import purge


async def test_purge_deletes_alert_history_past_its_age_with_the_run_history(
    clean_db: asyncpg.Pool,
) -> None:
    for age, subject in [("10 days", "old"), ("6 days", "recent")]:
        await clean_db.execute(
            "INSERT INTO breezeway.alert_history (created_at, kind, region_code, entity_type, "
            "subject, mail_status) VALUES (now() - $1::text::interval, 'failure', 'region_1', "
            "'tasks', $2, 'sent')",
            age,
            subject,
        )
    await clean_db.execute(
        "INSERT INTO breezeway.etl_sync_log (region_code, entity_type, sync_status, "
        "sync_started_at, sync_completed_at) VALUES ('region_1', 'tasks', 'failed', "
        "now() - interval '10 days', now() - interval '10 days')"
    )

    for age, processed in (("10 days", True), ("10 days", False), ("1 day", True)):
        await clean_db.execute(
            "INSERT INTO breezeway.webhook_events (region_code, kind, entity_id, event_name, "
            "body, received_at, processed_at, outcome) VALUES ('region_1', 'task', 1, "
            "'task-updated', '{}', now() - $1::interval, $2, $3)",
            timedelta(days=int(age.split()[0])),
            datetime.now(UTC) if processed else None,
            "applied" if processed else None,
        )

    counts = await purge(clean_db, timedelta(days=7))

    assert counts == {"sync_log_rows": 1, "rejected_records": 0, "alert_history_rows": 1,
                      "webhook_events": 1}  # fmt: skip
    # A pending event is never purged, whatever its age.
    assert await clean_db.fetchval("SELECT count(*) FROM breezeway.webhook_events") == 2
    left = await clean_db.fetch("SELECT subject FROM breezeway.alert_history")
    assert [row["subject"] for row in left] == ["recent"]
    assert await clean_db.fetchval("SELECT count(*) FROM breezeway.etl_sync_log") == 0
