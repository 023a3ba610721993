"""What each alert says: a run result, a batch, stuck runs or a token failure turned into
a subject and a body. Pure: no SMTP, no database, no clock but the values passed in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from breezeway_daemon.alerts.kinds import AlertEntry, AlertKind
from breezeway_daemon.alerts.remedies import remedy, stuck_remedy, warning_remedy
from breezeway_daemon.config import Settings
from breezeway_daemon.db.runs import RunCounts, StuckRun
from breezeway_daemon.errors import ErrorKind
from breezeway_daemon.sync import RunResult

MAX_ERROR_CHARS = 1000


@dataclass
class Alert:
    """One alert: its subject and body, and the pairs it is about."""

    subject: str
    body: str
    entries: list[AlertEntry]
    label: str = ""  # the mail's X-Breezeway-Alert header; the first entry's kind if empty

    @property
    def header_label(self) -> str:
        return self.label or str(self.entries[0].kind)


# --- pieces -------------------------------------------------------------------------------
def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def counts_text(counts: RunCounts) -> str:
    return (
        f"Records: processed {counts.records_processed}, new {counts.records_new}, "
        f"updated {counts.records_updated}, unchanged {counts.records_unchanged}, "
        f"deleted {counts.records_deleted}, rejected {counts.records_rejected}\n"
        f"API calls: {counts.api_calls_made}"
    )


def error_text(text: str | None) -> str:
    """An error on one line, cut to ``MAX_ERROR_CHARS``."""
    text = " ".join((text or "no error message").split())
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 3] + "..."
    return text


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if at else "unknown time"


def error_kind(value: ErrorKind | str | None) -> ErrorKind:
    try:
        return ErrorKind(value) if value is not None else ErrorKind.OTHER
    except ValueError:
        return ErrorKind.OTHER


def _run_facts(result: RunResult) -> list[str]:
    return [f"Mode: {result.mode}", f"Duration: {duration(result.duration_s)}",
            counts_text(result.counts)]  # fmt: skip


# --- one run --------------------------------------------------------------------------------
def failure_entry(result: RunResult, *, record: bool = True) -> AlertEntry:
    """The failure alert's entry for a failed run."""
    return AlertEntry(
        AlertKind.FAILURE, result.region, result.entity, result.run_id,
        error_kind(result.error_kind).value, f"🚨 ETL FAILURE: {result.region}/{result.entity}",
        record=record,
    )  # fmt: skip


def failure(settings: Settings, result: RunResult) -> Alert:
    """``🚨 ETL FAILURE``: the error, the run, and the runbook's remedy for its kind."""
    kind = error_kind(result.error_kind)
    entry = failure_entry(result)
    run_id = result.run_id if result.run_id is not None else "none (no run row)"
    body = [
        f"Run of {result.region}/{result.entity} failed.",
        "",
        f"Error ({kind.value}): {error_text(result.error)}",
        f"Run id: {run_id}",
        *_run_facts(result),
        "",
        remedy(settings, kind, result.region, result.entity),
    ]
    return Alert(entry.subject, "\n".join(body), [entry])


def recovery(result: RunResult, since: datetime) -> Alert:
    """``✅ ETL RECOVERED``: a success after the failure alerted at ``since``."""
    subject = f"✅ ETL RECOVERED: {result.region}/{result.entity}"
    body = [
        f"{result.region}/{result.entity} succeeded again (run {result.run_id}) "
        f"after the failure alerted at {when(since)}.",
        "",
        *_run_facts(result),
    ]
    entry = AlertEntry(AlertKind.RECOVERED, result.region, result.entity, result.run_id,
                       None, subject)  # fmt: skip
    return Alert(subject, "\n".join(body), [entry])


def warning_causes(
    settings: Settings, result: RunResult, previous_listing: int | None
) -> list[str]:
    """Why a successful run deserves a warning; empty when it does not.

    ``previous_listing``: the size of the pair's previous full listing, if any.
    """
    causes = []
    if result.duration_s > settings.warn_duration_minutes * 60:
        causes.append(
            f"It took {duration(result.duration_s)}, over the "
            f"{settings.warn_duration_minutes:g}-minute threshold."
        )
    budget = settings.warn_api_calls.get(result.entity)
    if budget is not None and result.counts.api_calls_made > budget:
        causes.append(
            f"It made {result.counts.api_calls_made} API calls, over the budget of "
            f"{budget} for {result.entity}."
        )
    ratio = settings.warn_shrink_ratio
    size = result.listing_size
    if size is not None and previous_listing and size < ratio * previous_listing:
        causes.append(
            f"Its full listing returned {size} records, under {ratio:.0%} of the previous "
            f"full listing ({previous_listing} records). They were stored anyway, and records "
            f"missing from the listing were marked deleted ({result.counts.records_deleted} "
            "this run)."
        )
    if result.counts.records_rejected > 0:
        causes.append(
            f"{result.counts.records_rejected} records were rejected (kept in "
            "breezeway.rejected_records with the reason)."
        )
    return causes


def warning(settings: Settings, result: RunResult, causes: list[str]) -> Alert:
    """``⚠️ ETL WARNING``: one per run, naming every cause."""
    region, entity = result.region, result.entity
    subject = f"⚠️ ETL WARNING: {region}/{entity}"
    lines = [f"Run {result.run_id} of {region}/{entity} succeeded, with warnings:"]
    lines += [f"  - {cause}" for cause in causes]
    steps = warning_remedy(
        settings, region, entity, rejected=result.counts.records_rejected > 0,
        shrunk=any("full listing" in cause for cause in causes),
    )  # fmt: skip
    lines += ["", *_run_facts(result), "", steps]
    entry = AlertEntry(AlertKind.WARNING, region, entity, result.run_id, None, subject)
    return Alert(subject, "\n".join(lines), [entry])


def token_failure(settings: Settings, region: str, error: str) -> Alert:
    """``🚨 ETL TOKEN FAILURE``: the region's credential could not get a token."""
    subject = f"🚨 ETL TOKEN FAILURE: {region}"
    body = [
        f"Region {region} could not get an API token; its runs will fail until it can.",
        "",
        f"Error: {error_text(error)}",
        "",
        remedy(settings, ErrorKind.TOKEN, region, None),
    ]
    entry = AlertEntry(AlertKind.TOKEN, region, "", None, ErrorKind.TOKEN.value, subject)
    return Alert(subject, "\n".join(body), [entry])


# --- several runs ---------------------------------------------------------------------------
def summary(
    settings: Settings,
    job_type: str,
    failures: Sequence[RunResult],
    total: int,
    entries: Sequence[AlertEntry],
    mailed: Sequence[datetime | None],
) -> Alert:
    """``📊 {job_type} Summary``: every failure of a batch, one entry each.

    ``mailed[i]``: when failure ``i`` was already mailed within the quiet period, or None.
    """
    fresh = sum(1 for at in mailed if at is None)
    regions = sorted({r.region for r in failures})
    lines = [
        f"{job_type}: {len(failures)} of {total} runs failed "
        f"({fresh} not reported before, {len(failures) - fresh} already mailed within "
        f"the last {settings.alert_quiet_hours:g} h).",
        f"Regions failing: {len(regions)} ({', '.join(regions)}).",
    ]
    entities = {r.entity for r in failures}
    if len(regions) > 3 or (len(regions) > 1 and len(entities) == 1):
        lines.append(
            "Several regions failing: likely a system-wide issue (network, database, API). "
            "Escalate with `breezeway-daemon bundle` if it persists."
        )
    lines += ["", "Failures:"]
    for result, entry, at in zip(failures, entries, mailed, strict=True):
        run_id = result.run_id if result.run_id is not None else "(none)"
        lines += [
            f"  - {result.region}/{result.entity}: run {run_id}, {entry.error_kind} error, "
            f"{duration(result.duration_s)}" + (f" (already reported at {when(at)})" if at else ""),
            f"      Error: {error_text(result.error)}",
            f"      {counts_text(result.counts).replace(chr(10), '; ')}",
            f"      Retry: breezeway-daemon run {result.region} {result.entity}",
        ]
    seen: set[ErrorKind] = set()
    for result in failures:
        kind = error_kind(result.error_kind)
        if kind not in seen:
            seen.add(kind)
            lines += [
                "",
                f"For {kind.value} errors (shown for {result.region}/{result.entity}; "
                "the same for the others):",
                remedy(settings, kind, result.region, result.entity),
            ]
    subject = f"📊 {job_type} Summary: {len(failures)} failures"
    return Alert(subject, "\n".join(lines), list(entries), label="summary")


def digest(job_type: str, alerts: Sequence[Alert], prefix: str, noun: str) -> Alert:
    """Several alerts of one kind from a batch as one; a single alert as itself."""
    if len(alerts) == 1:
        return alerts[0]
    parts = [f"{job_type}: {len(alerts)} {noun}."]
    for alert in alerts:
        parts += ["", f"== {alert.subject}", alert.body]
    entries = [entry for alert in alerts for entry in alert.entries]
    return Alert(f"{prefix}: {len(alerts)} {noun} in {job_type}", "\n".join(parts), entries)


def stuck_runs(runs: Sequence[StuckRun]) -> Alert:
    """``🚨 ETL STUCK``: runs the watchdog failed, one alert per sweep."""
    entries, parts = [], []
    for run in runs:
        subject = f"🚨 ETL STUCK: {run.region}/{run.entity}"
        entries.append(
            AlertEntry(AlertKind.STUCK, run.region, run.entity, run.run_id, None, subject)
        )
        parts += [
            f"{run.region}/{run.entity}: run {run.run_id}",
            f"  Reason: {error_text(run.reason)}",
            f"  Owner: {run.owner_host or '?'} pid {run.owner_pid or '?'}",
            f"  Started: {when(run.started_at)}; last heartbeat: {when(run.heartbeat_at)}",
            f"  Retry: breezeway-daemon run {run.region} {run.entity}",
            "",
        ]
    subject = entries[0].subject if len(entries) == 1 else f"🚨 ETL STUCK: {len(entries)} runs"
    head = [
        "The watchdog found runs that stopped reporting or ran over time; their rows in "
        "breezeway.etl_sync_log are marked failed.",
        "",
    ]
    return Alert(subject, "\n".join([*head, *parts, stuck_remedy()]), entries)
