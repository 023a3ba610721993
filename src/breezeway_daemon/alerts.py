"""Alerts: email (aiosmtplib) and ``alerts.log``, with a quiet period and batch digests.

What is alerted
---------------
- ``🚨 ETL FAILURE: {region}/{entity}``: a run ended ``failed`` (``skipped`` runs, which
  lost the pair's lock to another process, are not alerted). The body has the error,
  run id, mode, duration, counters and the runbook's remedy for the error's kind
  (database, API, token, data), with this project's commands.
- ``⚠️ ETL WARNING: {region}/{entity}``: a successful run that took longer than
  ``warn_duration_minutes``, made more API calls than ``warn_api_calls[entity]``,
  returned a full listing under ``warn_shrink_ratio`` of the pair's previous full
  listing (sizes kept in ``breezeway.alert_listing_sizes``), or rejected records.
  One warning per run, naming every cause.
- ``✅ ETL RECOVERED: {region}/{entity}``: a run succeeded for a pair whose latest
  failure or stuck-run alert (``breezeway.alert_history``) has had no recovery yet.
- ``📊 {job_type} Summary: {N} failures``: after a scheduled batch with N > 0 failed
  runs, listing every failure.
- ``🚨 ETL STUCK: {region}/{entity}`` (or ``🚨 ETL STUCK: {N} runs`` for several in one
  watchdog sweep): runs the watchdog found without a heartbeat or over time.
- ``🚨 ETL TOKEN FAILURE: {region}``: the region's credential could not get a token.

Every alert is appended to ``alerts.log``, mailed or not; each alert also leaves one
row per region/entity it is about in ``breezeway.alert_history``.

Quiet period
------------
An alert's *key* is its kind and pair: ``(failure|warning|recovered|stuck|token,
region, entity)``. An alert is not mailed when an alert with the same key was mailed
within ``alert_quiet_hours`` (it is still logged, with a line saying why it was not
mailed). A mail that could not be delivered does not count, so the next alert tries
again. The window runs from the last mail of that key, so a pair that flaps between
failing and recovering mails at most one failure and one recovery per quiet period.
Alerts about several pairs (digests, stuck runs) are mailed when at least one pair is
fresh (not mailed within the period); the body still lists every pair and marks those
already reported. The history table is shared by every process (the daemon, an
operator's ``breezeway-daemon run``); when the database cannot be reached, this
process's memory of what it mailed stands in for it.

Batch folding
-------------
``run_finished(result, in_batch=True)`` logs and records the run's alerts but mails
nothing: it is for runs of a scheduled batch, whose ``batch_finished(job_type,
results)`` follows and mails at most three messages for the whole batch:

1. the ``📊`` summary, when any run failed and at least one failure is fresh;
2. one ``⚠️`` digest of the batch's warnings (the per-run subject when there is one);
3. one ``✅`` digest of the batch's recoveries (likewise).

So an outage of every region gives one summary mail, and its end one recovery mail,
not one per region and entity. A folded alert whose ``batch_finished`` never comes
stays in ``alerts.log`` (``mail: folded``) only. Without ``in_batch`` (manual runs),
each alert is mailed on its own under the quiet period.

Never raising
-------------
No public method raises for a broken mail server, an unwritable ``alerts.log`` or an
unreachable database: each problem is logged (structlog, without the SMTP password)
and the next alert tries again. Every wait is bounded (SMTP timeouts, database calls
under ``db_connect_timeout_s``). Subjects and bodies pass through ``scrub()``, which
removes configured secrets, URL passwords, bearer tokens and ``token=...`` values;
errors are cut short, and no record is ever put into an alert.

alerts.log format
-----------------
One record per alert, readable with ``tail -50`` and parsed by ``parse_alerts_log``::

    2025-06-01T03:00:12+00:00 🚨 ETL FAILURE: nashville/properties
        Run of nashville/properties failed.
        ...
        mail: sent to ops@example.com

A header line (ISO 8601 UTC time, one space, the subject), the body with every line
indented by four spaces (blank body lines are four spaces), and a blank line.
"""

from __future__ import annotations

import asyncio
import shlex
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import aiosmtplib
import asyncpg
import structlog

from breezeway_daemon.config import Settings
from breezeway_daemon.db.runs import RunCounts
from breezeway_daemon.errors import ErrorKind, describe
from breezeway_daemon.redact import configured_secrets, scrub
from breezeway_daemon.sync import RunResult

log = structlog.get_logger(__name__)

T = TypeVar("T")

FAILURE, WARNING, RECOVERED, STUCK, TOKEN = "failure", "warning", "recovered", "stuck", "token"
FAILURE_KINDS = (FAILURE, STUCK)  # alerts a later success recovers from

MAX_ERROR_CHARS = 1000
INDENT = "    "
DB_RETRY_AFTER_S = 30.0  # after a failed database call, use memory for this long
PENDING_MAX_AGE_S = 86_400.0  # folded alerts whose batch never finished are dropped


# --- alerts.log -----------------------------------------------------------------------
@dataclass(frozen=True)
class LoggedAlert:
    """One record of ``alerts.log``."""

    at: datetime
    subject: str
    body: str


def format_record(at: datetime, subject: str, body: str) -> str:
    """One ``alerts.log`` record: header line, indented body, blank line."""
    lines = body.rstrip("\n").split("\n")
    indented = "\n".join(INDENT + line if line.strip() else INDENT for line in lines)
    return f"{at.astimezone(UTC).isoformat(timespec='seconds')} {subject}\n{indented}\n\n"


def parse_alerts_log(text: str) -> list[LoggedAlert]:
    """The records of an ``alerts.log``; lines that fit no record are skipped."""
    records: list[LoggedAlert] = []
    header: tuple[datetime, str] | None = None
    body: list[str] = []

    def close() -> None:
        if header is not None:
            records.append(LoggedAlert(header[0], header[1], "\n".join(body).rstrip()))

    for line in text.split("\n"):
        if line.startswith(INDENT) and header is not None:
            body.append(line[len(INDENT) :])
        elif line.strip() == "":
            close()
            header, body = None, []
        else:
            close()
            stamp, _, subject = line.partition(" ")
            try:
                header = (datetime.fromisoformat(stamp), subject)
            except ValueError:
                header = None
            body = []
    close()
    return records


def _append_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)


# --- remedies ---------------------------------------------------------------------------
def psql_command(settings: Settings) -> str:
    """``psql -h host -p port -U user -d db`` for the configured database, never a password."""
    if settings.database_url is None:
        return "psql"
    try:
        parts = urlsplit(settings.database_url.get_secret_value())
        args = ["psql"]
        if parts.hostname:
            args += ["-h", parts.hostname]
        if parts.port:
            args += ["-p", str(parts.port)]
        if parts.username:
            args += ["-U", unquote(parts.username)]
        if parts.path.strip("/"):
            args += ["-d", unquote(parts.path.strip("/"))]
    except ValueError:
        return 'psql "$DATABASE_URL"'
    return shlex.join(args)


def _sql(psql: str, query: str) -> str:
    return f'{psql} -c "{query}"'


RUNBOOK_SECTIONS = {
    ErrorKind.DATABASE: "A. Database Connection Error",
    ErrorKind.API: "B. API Connection Error",
    ErrorKind.TOKEN: "C. Token Error",
    ErrorKind.DATA: "D. Data Error",
}


def remedy(settings: Settings, kind: ErrorKind | None, region: str, entity: str | None) -> str:
    """The runbook's steps for ``kind``, with this project's commands filled in."""
    kind = kind or ErrorKind.OTHER
    psql = psql_command(settings)
    retry = (
        f"breezeway-daemon run {region} {entity}" if entity else f"breezeway-daemon run {region}"
    )
    journal = f'journalctl -u breezeway-daemon --since "-2h" | grep {region}'
    if kind is ErrorKind.DATABASE:
        steps = [
            "Check database connectivity:\n" + INDENT + _sql(psql, "SELECT 1;"),
            "Check active connections:\n"
            + INDENT
            + _sql(
                psql,
                "SELECT COUNT(*), state FROM pg_stat_activity "
                "WHERE datname = current_database() GROUP BY state;",
            ),
            f"If the connection pool is exhausted, wait 5 minutes, then retry:\n{INDENT}{retry}",
            "If still failing, check the network and firewall to the database host, and the "
            f"daemon's log:\n{INDENT}{journal}",
        ]
    elif kind is ErrorKind.API:
        steps = [
            f"Check API connectivity:\n{INDENT}curl -I {settings.api_base_url}",
            f"Check that the region gets a token:\n{INDENT}breezeway-daemon token {region}",
            "If rate limited (429): the client already waits and retries with backoff; "
            "wait up to an hour before retrying by hand.",
            f"Retry:\n{INDENT}{retry}",
            f"Details:\n{INDENT}{journal}",
        ]
    elif kind is ErrorKind.TOKEN:
        upper = region.upper()
        steps = [
            "Check the token in the database:\n"
            + INDENT
            + _sql(
                psql,
                "SELECT region_code, token_expires_at, last_error FROM breezeway.api_tokens "
                f"WHERE region_code = '{region}';",
            ),
            f"Force a token refresh:\n{INDENT}breezeway-daemon token {region} --refresh\n"
            "or, as in the runbook:\n"
            + INDENT
            + _sql(
                psql,
                "UPDATE breezeway.api_tokens SET access_token = NULL, refresh_token = NULL, "
                "token_expires_at = NOW() - INTERVAL '1 hour' "
                f"WHERE region_code = '{region}';",
            ),
            f"Retry (gets a new token):\n{INDENT}{retry}",
            f"If still failing, check BREEZEWAY_REGIONS__{upper}__CLIENT_ID and "
            f"BREEZEWAY_REGIONS__{upper}__CLIENT_SECRET in {settings.env_file} against the "
            "Breezeway account, then reload the daemon:\n"
            f"{INDENT}systemctl kill -s HUP breezeway-daemon\n"
            "Invalid credentials must be re-issued by Breezeway: escalate.",
        ]
    elif kind is ErrorKind.DATA:
        entity_name = entity or "{entity}"
        steps = [
            f"Check the error in the log:\n{INDENT}{journal}",
            "Records the run could not store are kept with the reason:\n"
            + INDENT
            + _sql(
                psql,
                "SELECT record_id, reason, rejected_at FROM breezeway.rejected_records "
                f"WHERE region_code = '{region}' AND entity_type = '{entity_name}' "
                "ORDER BY rejected_at DESC LIMIT 20;",
            ),
            "For foreign key errors, check the parent records exist:\n"
            + INDENT
            + _sql(
                psql, f"SELECT COUNT(*) FROM breezeway.properties WHERE region_code = '{region}';"
            ),
            "Run the parents first (reservations need properties; tasks need properties "
            "and, optionally, reservations):\n"
            f"{INDENT}breezeway-daemon run {region} properties\n"
            f"{INDENT}breezeway-daemon run {region} reservations\n"
            f"{INDENT}breezeway-daemon run {region} tasks",
        ]
    else:
        steps = [
            f"Details:\n{INDENT}{journal}",
            f"Every region and entity at a glance:\n{INDENT}breezeway-daemon status",
            f"Retry:\n{INDENT}{retry}",
        ]
    steps.append(
        f"Overall state: breezeway-daemon status. If it persists for more than 2 hours, "
        f"or more than 3 regions fail, escalate with:\n{INDENT}breezeway-daemon bundle"
    )
    section = RUNBOOK_SECTIONS.get(kind)
    title = f"What to do ({kind.value} error; runbook: FAILURE ALERT"
    title += f", {section})" if section else ")"
    return title + ":\n" + _numbered(steps)


def _numbered(steps: list[str]) -> str:
    """``  1. step``, continuation lines aligned under the step's text."""
    return "\n".join(
        f"  {number}. " + step.replace("\n", "\n     ") for number, step in enumerate(steps, 1)
    )


# --- formatting helpers ----------------------------------------------------------------
def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _counts(counts: RunCounts) -> str:
    return (
        f"Records: processed {counts.records_processed}, new {counts.records_new}, "
        f"updated {counts.records_updated}, unchanged {counts.records_unchanged}, "
        f"deleted {counts.records_deleted}, rejected {counts.records_rejected}\n"
        f"API calls: {counts.api_calls_made}"
    )


def _error(text: str | None) -> str:
    text = " ".join((text or "no error message").split())
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 3] + "..."
    return text


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if at else "unknown time"


def _kind(value: ErrorKind | str | None) -> ErrorKind:
    try:
        return ErrorKind(value) if value is not None else ErrorKind.OTHER
    except ValueError:
        return ErrorKind.OTHER


# --- the alerts --------------------------------------------------------------------------
@dataclass
class _Item:
    """What an alert is about: one pair (or region); one row in ``alert_history``."""

    kind: str
    region: str
    entity: str = ""
    run_id: int | None = None
    error_kind: str | None = None
    subject: str = ""
    row_id: int | None = None
    record: bool = True  # False: another alert already has this pair's row

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.region, self.entity)


@dataclass
class _Folded:
    """An alert of a batch run, waiting for its batch's digest."""

    item: _Item
    body: str
    at: float = field(default_factory=time.monotonic)


class Alerts:
    """Email and ``alerts.log`` alerts for runs, batches, stuck runs and tokens."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool | None) -> None:
        self.pool = pool
        self.settings = settings
        self._secrets = configured_secrets(settings)
        self._file_lock = asyncio.Lock()
        self._db_down_until = 0.0
        # Stand-ins for the history table while the database is unreachable.
        self._mailed: dict[tuple[str, str, str], tuple[datetime, int | None]] = {}
        self._open: dict[tuple[str, str], datetime] = {}
        self._listing_sizes: dict[tuple[str, str], int] = {}
        self._folded: dict[tuple[str, str, int | None], list[_Folded]] = {}

    def update_settings(self, settings: Settings) -> None:
        """Use new settings (SIGHUP) from the next alert on."""
        self.settings = settings
        self._secrets = configured_secrets(settings)

    # --- public API -----------------------------------------------------------------
    async def run_finished(self, result: RunResult, *, in_batch: bool = False) -> None:
        """Alert on one run: failure, warnings, recovery. ``in_batch``: fold into the digest."""
        try:
            if result.status == "failed":
                await self._run_failed(result, in_batch)
            elif result.status == "success":
                await self._run_succeeded(result, in_batch)
        except Exception as err:  # noqa: BLE001 - alerting must never fail a sync
            log.error("alert_failed", region=result.region, entity=result.entity,
                      error=self._scrub(describe(err)), exc_info=True)  # fmt: skip

    async def batch_finished(self, job_type: str, results: Sequence[RunResult]) -> None:
        """After a scheduled batch: the failure summary, then warning and recovery digests."""
        job_type = _one_line(job_type)
        try:
            folded = self._claim_folded(results)
            failures = [result for result in results if result.failed]
            if failures:
                await self._summary(job_type, failures, len(results), folded)
            for kind, emoji, label, noun in (
                (WARNING, "⚠️", "ETL WARNING", "runs"),
                (RECOVERED, "✅", "ETL RECOVERED", "pairs"),
            ):
                entries = [entry for entry in folded if entry.item.kind == kind]
                if entries:
                    await self._digest(job_type, entries, f"{emoji} {label}", noun)
        except Exception as err:  # noqa: BLE001
            log.error("alert_failed", job_type=job_type, error=self._scrub(describe(err)),
                      exc_info=True)  # fmt: skip

    async def stuck_runs(self, rows: Sequence[dict[str, Any]]) -> None:
        """Runs the watchdog found stuck: one alert for the sweep."""
        if not rows:
            return
        try:
            await self._stuck(rows)
        except Exception as err:  # noqa: BLE001
            log.error("alert_failed", what="stuck_runs", error=self._scrub(describe(err)),
                      exc_info=True)  # fmt: skip

    async def token_failure(self, region: str, error: str | BaseException) -> None:
        """The region's credential could not get a token."""
        try:
            text = describe(error) if isinstance(error, BaseException) else str(error)
            subject = f"🚨 ETL TOKEN FAILURE: {region}"
            body = "\n".join(
                [
                    f"Region {region} could not get an API token; its runs will fail until it can.",
                    "",
                    f"Error: {_error(text)}",
                    "",
                    remedy(self.settings, ErrorKind.TOKEN, region, None),
                ]
            )
            item = _Item(TOKEN, region, "", None, ErrorKind.TOKEN.value, subject)
            await self._deliver(subject, body, [item])
        except Exception as err:  # noqa: BLE001
            log.error("alert_failed", what="token_failure", region=region,
                      error=self._scrub(describe(err)), exc_info=True)  # fmt: skip

    # --- runs ------------------------------------------------------------------------
    async def _run_failed(self, result: RunResult, in_batch: bool) -> None:
        kind = _kind(result.error_kind)
        subject = f"🚨 ETL FAILURE: {result.region}/{result.entity}"
        body = "\n".join(
            [
                f"Run of {result.region}/{result.entity} failed.",
                "",
                f"Error ({kind.value}): {_error(result.error)}",
                f"Run id: {result.run_id if result.run_id is not None else 'none (no run row)'}",
                f"Mode: {result.mode}",
                f"Duration: {_duration(result.duration_s)}",
                _counts(result.counts),
                "",
                remedy(self.settings, kind, result.region, result.entity),
            ]
        )
        item = _Item(FAILURE, result.region, result.entity, result.run_id, kind.value, subject)
        await self._deliver(subject, body, [item], fold=in_batch)
        self._open[(result.region, result.entity)] = datetime.now(UTC)

    async def _run_succeeded(self, result: RunResult, in_batch: bool) -> None:
        since = await self._alerting_since(result.region, result.entity)
        if since is not None:
            subject = f"✅ ETL RECOVERED: {result.region}/{result.entity}"
            body = "\n".join(
                [
                    f"{result.region}/{result.entity} succeeded again (run {result.run_id}) "
                    f"after the failure alerted at {_when(since)}.",
                    "",
                    f"Mode: {result.mode}",
                    f"Duration: {_duration(result.duration_s)}",
                    _counts(result.counts),
                ]
            )
            item = _Item(RECOVERED, result.region, result.entity, result.run_id, None, subject)
            await self._deliver(subject, body, [item], fold=in_batch)
            self._open.pop((result.region, result.entity), None)
        causes = await self._warning_causes(result)
        if causes:
            subject = f"⚠️ ETL WARNING: {result.region}/{result.entity}"
            body = self._warning_body(result, causes)
            item = _Item(WARNING, result.region, result.entity, result.run_id, None, subject)
            await self._deliver(subject, body, [item], fold=in_batch)

    async def _warning_causes(self, result: RunResult) -> list[str]:
        settings = self.settings
        causes = []
        if result.duration_s > settings.warn_duration_minutes * 60:
            causes.append(
                f"It took {_duration(result.duration_s)}, over the "
                f"{settings.warn_duration_minutes:g}-minute threshold."
            )
        budget = settings.warn_api_calls.get(result.entity)
        if budget is not None and result.counts.api_calls_made > budget:
            causes.append(
                f"It made {result.counts.api_calls_made} API calls, over the budget of "
                f"{budget} for {result.entity}."
            )
        if result.listing_size is not None:
            previous = await self._swap_listing_size(result)
            ratio = settings.warn_shrink_ratio
            if previous and result.listing_size < ratio * previous:
                causes.append(
                    f"Its full listing returned {result.listing_size} records, under "
                    f"{ratio:.0%} of the previous full listing ({previous} records). They were "
                    "stored anyway, and records missing from the listing were marked deleted "
                    f"({result.counts.records_deleted} this run)."
                )
        if result.counts.records_rejected > 0:
            causes.append(
                f"{result.counts.records_rejected} records were rejected (kept in "
                "breezeway.rejected_records with the reason)."
            )
        return causes

    def _warning_body(self, result: RunResult, causes: list[str]) -> str:
        psql = psql_command(self.settings)
        region, entity = result.region, result.entity
        lines = [f"Run {result.run_id} of {region}/{entity} succeeded, with warnings:"]
        lines += [f"  - {cause}" for cause in causes]
        steps = [
            "Recent runs of this pair:\n"
            + INDENT
            + _sql(
                psql,
                "SELECT region_code, entity_type, sync_started_at, sync_completed_at, "
                "EXTRACT(EPOCH FROM (sync_completed_at - sync_started_at)) AS duration_seconds, "
                "records_processed, api_calls_made FROM breezeway.etl_sync_log "
                f"WHERE region_code = '{region}' AND entity_type = '{entity}' "
                "ORDER BY sync_started_at DESC LIMIT 10;",
            ),
            "Slow or expensive once: usually volume or a slow API (no action). Consistently "
            f"over {self.settings.warn_duration_minutes:g} minutes: check database locks and API "
            "response times, then contact the dev team.",
        ]
        if result.counts.records_rejected > 0:
            steps.append(
                "The rejected records and why:\n"
                + INDENT
                + _sql(
                    psql,
                    "SELECT record_id, reason, rejected_at FROM breezeway.rejected_records "
                    f"WHERE region_code = '{region}' AND entity_type = '{entity}' "
                    "ORDER BY rejected_at DESC LIMIT 20;",
                )
            )
        if any("full listing" in cause for cause in causes):
            steps.append(
                "A shrunken listing: check with Breezeway whether the records are really gone; "
                "if the API returned too few by mistake, a full run restores them:\n"
                f"{INDENT}breezeway-daemon run {region} {entity} --full"
            )
        lines += [
            "",
            f"Mode: {result.mode}",
            f"Duration: {_duration(result.duration_s)}",
            _counts(result.counts),
            "",
            "What to do (runbook: WARNING ALERT):",
            _numbered(steps),
        ]
        return "\n".join(lines)

    # --- batches, stuck runs ------------------------------------------------------------
    async def _summary(
        self, job_type: str, failures: list[RunResult], total: int, folded: list[_Folded]
    ) -> None:
        # A failure folded by run_finished has a history row to update; one that was
        # not (the caller mailed it on its own) is listed but not recorded again.
        folded_items = {
            (e.item.region, e.item.entity, e.item.run_id): e.item
            for e in folded
            if e.item.kind == FAILURE
        }
        items = [
            folded_items.get((r.region, r.entity, r.run_id))
            or _Item(
                FAILURE,
                r.region,
                r.entity,
                r.run_id,
                _kind(r.error_kind).value,
                f"🚨 ETL FAILURE: {r.region}/{r.entity}",
                record=False,
            )  # fmt: skip
            for r in failures
        ]
        last = await self._last_mailed(items)
        fresh = sum(1 for item in items if last[item.key] is None)
        regions = sorted({r.region for r in failures})
        subject = f"📊 {job_type} Summary: {len(failures)} failures"
        lines = [
            f"{job_type}: {len(failures)} of {total} runs failed "
            f"({fresh} not reported before, {len(failures) - fresh} already mailed within "
            f"the last {self.settings.alert_quiet_hours:g} h).",
            f"Regions failing: {len(regions)} ({', '.join(regions)}).",
        ]
        entities = {r.entity for r in failures}
        if len(regions) > 3 or (len(regions) > 1 and len(entities) == 1):
            lines.append(
                "Several regions failing: likely a system-wide issue (network, database, API). "
                "Escalate with `breezeway-daemon bundle` if it persists."
            )
        lines += ["", "Failures:"]
        for result, item in zip(failures, items, strict=True):
            mailed = last[item.key]
            lines += [
                f"  - {result.region}/{result.entity}: run "
                f"{result.run_id if result.run_id is not None else '(none)'}, "
                f"{item.error_kind} error, {_duration(result.duration_s)}"
                + (f" (already reported at {_when(mailed)})" if mailed else ""),
                f"      Error: {_error(result.error)}",
                f"      {_counts(result.counts).replace(chr(10), '; ')}",
                f"      Retry: breezeway-daemon run {result.region} {result.entity}",
            ]
        seen: set[ErrorKind] = set()
        for result in failures:
            kind = _kind(result.error_kind)
            if kind in seen:
                continue
            seen.add(kind)
            lines += [
                "",
                f"For {kind.value} errors (shown for {result.region}/{result.entity}; "
                "the same for the others):",
                remedy(self.settings, kind, result.region, result.entity),
            ]
        await self._deliver(subject, "\n".join(lines), items, last=last, label="summary")

    async def _digest(self, job_type: str, entries: list[_Folded], prefix: str, noun: str) -> None:
        items = [entry.item for entry in entries]
        if len(entries) == 1:
            subject, body = items[0].subject, entries[0].body
        else:
            subject = f"{prefix}: {len(entries)} {noun} in {job_type}"
            parts = [f"{job_type}: {len(entries)} {noun}."]
            for entry in entries:
                parts += ["", f"== {entry.item.subject}", entry.body]
            body = "\n".join(parts)
        await self._deliver(subject, body, items)

    async def _stuck(self, rows: Sequence[dict[str, Any]]) -> None:
        items, parts = [], []
        for row in rows:
            region, entity = str(row.get("region_code", "?")), str(row.get("entity_type", "?"))
            run_id = row.get("id")
            subject = f"🚨 ETL STUCK: {region}/{entity}"
            items.append(_Item(STUCK, region, entity, run_id, None, subject))
            host, pid = row.get("owner_host") or "?", row.get("owner_pid") or "?"
            started, beat = row.get("sync_started_at"), row.get("heartbeat_at")
            parts += [
                f"{region}/{entity}: run {run_id}",
                f"  Reason: {_error(row.get('reason'))}",
                f"  Owner: {host} pid {pid}",
                f"  Started: {_when(started)}; last heartbeat: {_when(beat)}",
                f"  Retry: breezeway-daemon run {region} {entity}",
                "",
            ]
        subject = items[0].subject if len(items) == 1 else f"🚨 ETL STUCK: {len(items)} runs"
        head = [
            "The watchdog found runs that stopped reporting or ran over time; their rows in "
            "breezeway.etl_sync_log are marked failed.",
            "",
        ]
        tail = [
            "What to do (runbook: ETL Stuck in 'running' Status):",
            "  1. If the owner process still runs on its host (ps -p PID), it is hung: see",
            f'{INDENT}   journalctl -u breezeway-daemon --since "-2h"',
            "     and restart it if needed: systemctl restart breezeway-daemon",
            "  2. Retry each run (commands above); overall state: breezeway-daemon status",
            "  3. A sweep by hand: breezeway-daemon watchdog",
        ]
        await self._deliver(subject, "\n".join(head + parts + tail), items)
        now = datetime.now(UTC)
        for item in items:
            self._open[(item.region, item.entity)] = now

    def _claim_folded(self, results: Sequence[RunResult]) -> list[_Folded]:
        """The folded alerts of these runs, in the results' order; older leftovers dropped."""
        claimed: list[_Folded] = []
        for result in results:
            claimed += self._folded.pop((result.region, result.entity, result.run_id), [])
        cutoff = time.monotonic() - PENDING_MAX_AGE_S
        for key in [k for k, v in self._folded.items() if all(e.at < cutoff for e in v)]:
            del self._folded[key]
        return claimed

    # --- delivery -----------------------------------------------------------------------
    async def _deliver(
        self,
        subject: str,
        body: str,
        items: list[_Item],
        *,
        fold: bool = False,
        last: dict[tuple[str, str, str], datetime | None] | None = None,
        label: str | None = None,
    ) -> None:
        """Mail (unless off, folded or quiet), log to alerts.log, record in the history."""
        at = datetime.now(UTC)
        subject = self._scrub(_one_line(subject))
        body = self._scrub(body)
        settings = self.settings
        if fold:
            status, note = "folded", "folded into the batch's digest (mailed after the batch)"
        elif not settings.smtp_host or not settings.alert_to:
            status, note = "off", "not sent (SMTP is not configured)"
        else:
            if last is None:
                last = await self._last_mailed(items)
            quiet = [last[item.key] for item in items]
            if all(mailed is not None for mailed in quiet):
                latest = max(m for m in quiet if m is not None)
                status = "quiet"
                note = (
                    f"not sent (quiet period: the same alert was mailed at {_when(latest)}; "
                    f"quiet for {settings.alert_quiet_hours:g} h)"
                )
            else:
                error = await self._send(subject, body, label or items[0].kind)
                if error is None:
                    status, note = "sent", f"sent to {', '.join(settings.alert_to)}"
                else:
                    status = "failed"
                    note = f"NOT sent: {error} (the next alert tries again)"
        await self._append_log(format_record(at, subject, f"{body}\n\nmail: {note}"))
        await self._record(items, status, body if fold else None)
        if status == "sent":
            for item in items:
                self._mailed[item.key] = (at, item.run_id)

    async def _send(self, subject: str, body: str, kind: str) -> str | None:
        """Mail one alert; the error as one line (never raised), or None when sent."""
        settings = self.settings
        assert settings.smtp_host is not None
        message = EmailMessage()
        message["From"] = settings.alert_from
        message["To"] = ", ".join(settings.alert_to)
        message["Subject"] = subject
        message["Date"] = formatdate(usegmt=True)
        domain = settings.alert_from.rpartition("@")[2] or "localhost"
        message["Message-ID"] = make_msgid("breezeway-alert", domain=domain)
        message["X-Breezeway-Alert"] = kind
        message.set_content(body)
        implicit_tls = settings.smtp_port == 465  # SMTPS: TLS from the first byte
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
        try:
            await asyncio.wait_for(
                aiosmtplib.send(
                    message,
                    hostname=settings.smtp_host,
                    port=settings.smtp_port,
                    username=settings.smtp_username or None,
                    password=password if settings.smtp_username else None,
                    use_tls=implicit_tls,
                    start_tls=settings.smtp_starttls and not implicit_tls,
                    timeout=settings.smtp_timeout_s,
                    # socket.getfqdn() (aiosmtplib's default) may block on DNS.
                    local_hostname=socket.gethostname(),
                ),
                # Each SMTP step is bounded by smtp_timeout_s; this bounds them all.
                settings.smtp_timeout_s * 3,
            )
        except Exception as err:  # noqa: BLE001 - a broken mail server must not fail a sync
            error = self._scrub(describe(err))
            log.error("alert_mail_failed", subject=subject, smtp_host=settings.smtp_host,
                      smtp_port=settings.smtp_port, error=error)  # fmt: skip
            return error
        log.info("alert_mailed", subject=subject, recipients=len(settings.alert_to))
        return None

    async def _append_log(self, record: str) -> None:
        path = self.settings.alerts_log_path
        try:
            async with self._file_lock:
                await asyncio.to_thread(_append_file, path, record)
        except Exception as err:  # noqa: BLE001 - an unwritable log must not fail a sync
            log.error("alerts_log_unwritable", path=str(path), error=self._scrub(describe(err)))

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    # --- history ----------------------------------------------------------------------
    async def _db(self, what: str, call: Callable[[asyncpg.Pool], Awaitable[T]]) -> T | None:
        """``call(pool)`` bounded in time; None when the database cannot answer."""
        loop = asyncio.get_running_loop()
        if self.pool is None or loop.time() < self._db_down_until:
            return None
        try:
            return await asyncio.wait_for(call(self.pool), self.settings.db_connect_timeout_s)
        except Exception as err:  # noqa: BLE001 - memory stands in for the history
            self._db_down_until = loop.time() + DB_RETRY_AFTER_S
            log.warning("alert_history_unavailable", what=what, error=self._scrub(describe(err)))
            return None

    async def _last_mailed(self, items: list[_Item]) -> dict[tuple[str, str, str], datetime | None]:
        """For each item's key: when it was last mailed within the quiet period, else None."""
        hours = self.settings.alert_quiet_hours
        result: dict[tuple[str, str, str], datetime | None] = {item.key: None for item in items}
        if hours <= 0 or not items:
            return result
        rows = await self._db(
            "quiet_period",
            lambda pool: pool.fetch(
                """
                SELECT k.kind, k.region, k.entity, (
                    SELECT max(h.mailed_at) FROM breezeway.alert_history h
                    WHERE h.kind = k.kind AND h.region_code = k.region
                      AND h.entity_type = k.entity
                      AND h.mailed_at > now() - $4::float8 * interval '1 hour'
                      -- a run's own alert does not quieten its batch summary
                      AND (k.run_id IS NULL OR h.run_id IS DISTINCT FROM k.run_id)
                ) AS mailed_at
                FROM unnest($1::text[], $2::text[], $3::text[], $5::bigint[])
                    AS k(kind, region, entity, run_id)
                """,
                [item.kind for item in items],
                [item.region for item in items],
                [item.entity for item in items],
                hours,
                [item.run_id for item in items],
            ),
        )
        if rows is not None:
            for row in rows:
                key = (row["kind"], row["region"], row["entity"])
                if row["mailed_at"] is not None:
                    result[key] = max(filter(None, (result[key], row["mailed_at"])))
            return result
        horizon = datetime.now(UTC) - timedelta(hours=hours)
        for item in items:
            mailed = self._mailed.get(item.key)
            own_run = item.run_id is not None and mailed is not None and mailed[1] == item.run_id
            if mailed and mailed[0] > horizon and not own_run:
                result[item.key] = mailed[0]
        return result

    async def _record(self, items: list[_Item], status: str, folded_body: str | None) -> None:
        """Insert (or, for folded ones, update) the items' history rows."""
        new = [item for item in items if item.row_id is None and item.record]
        old = [item for item in items if item.row_id is not None]

        async def write(pool: asyncpg.Pool) -> list[int]:
            ids: list[int] = []
            async with pool.acquire() as conn, conn.transaction():
                if old:
                    await conn.execute(
                        """
                        UPDATE breezeway.alert_history
                        SET mail_status = $2,
                            mailed_at = CASE WHEN $2 = 'sent' THEN now() END
                        WHERE id = ANY($1::bigint[])
                        """,
                        [item.row_id for item in old],
                        status,
                    )
                if new:
                    ids = [
                        row["id"]
                        for row in await conn.fetch(
                            """
                            INSERT INTO breezeway.alert_history
                                (kind, region_code, entity_type, run_id, error_kind, subject,
                                 mail_status, mailed_at)
                            SELECT k.kind, k.region, k.entity, k.run_id, k.error_kind, k.subject,
                                   $7, CASE WHEN $7 = 'sent' THEN now() END
                            FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[],
                                        $5::text[], $6::text[])
                                AS k(kind, region, entity, run_id, error_kind, subject)
                            RETURNING id
                            """,
                            [item.kind for item in new],
                            [item.region for item in new],
                            [item.entity for item in new],
                            [item.run_id for item in new],
                            [item.error_kind for item in new],
                            [self._scrub(item.subject) for item in new],
                            status,
                        )
                    ]
            return ids

        ids = await self._db("record", write)
        for item, row_id in zip(new, ids or [], strict=False):
            item.row_id = row_id
        if folded_body is not None:
            for item in items:
                key = (item.region, item.entity, item.run_id)
                self._folded.setdefault(key, []).append(_Folded(item, folded_body))

    async def _alerting_since(self, region: str, entity: str) -> datetime | None:
        """When the pair's unrecovered failure alert was raised; None when there is none."""
        row = await self._db(
            "recovery",
            lambda pool: pool.fetchrow(
                """
                SELECT kind, created_at FROM breezeway.alert_history
                WHERE region_code = $1 AND entity_type = $2 AND kind = ANY($3::text[])
                ORDER BY id DESC LIMIT 1
                """,
                region,
                entity,
                [*FAILURE_KINDS, RECOVERED],
            ),
        )
        remembered = self._open.get((region, entity))
        if row is not None and row["kind"] in FAILURE_KINDS:
            return row["created_at"]
        # Failures raised while the database was down are only in memory; a recovery
        # another process recorded after them wins.
        if remembered is not None and (row is None or remembered > row["created_at"]):
            return remembered
        self._open.pop((region, entity), None)
        return None

    async def _swap_listing_size(self, result: RunResult) -> int | None:
        """Store this full listing's size; return the pair's previous one."""
        pair = (result.region, result.entity)
        size = result.listing_size
        assert size is not None
        remembered = self._listing_sizes.get(pair)
        self._listing_sizes[pair] = size
        row = await self._db(
            "listing_size",
            lambda pool: pool.fetchrow(
                """
                WITH previous AS (
                    SELECT listing_size FROM breezeway.alert_listing_sizes
                    WHERE region_code = $1 AND entity_type = $2
                )
                INSERT INTO breezeway.alert_listing_sizes
                    (region_code, entity_type, listing_size, run_id)
                VALUES ($1, $2, $3, $4)
                ON CONFLICT (region_code, entity_type) DO UPDATE
                SET listing_size = excluded.listing_size, run_id = excluded.run_id,
                    recorded_at = now()
                RETURNING (SELECT listing_size FROM previous) AS previous
                """,
                result.region,
                result.entity,
                size,
                result.run_id,
            ),
        )
        if row is not None:
            return row["previous"]
        return remembered


async def purge_history(pool: asyncpg.Pool, older_than: timedelta) -> int:
    """Delete alert history rows older than ``older_than``; how many were deleted."""
    status = await pool.execute(
        "DELETE FROM breezeway.alert_history WHERE created_at < now() - $1::interval",
        older_than,
    )
    return int(status.split()[-1])


async def report_batch(alerts: Alerts, job_type: str, results: Sequence[RunResult]) -> None:
    """Every alert a finished batch calls for: per-run alerts folded into one summary,
    and one token-failure alert per region whose credential failed."""
    for result in results:
        await alerts.run_finished(result, in_batch=True)
    await alerts.batch_finished(job_type, results)
    token_errors: dict[str, str] = {}
    for result in results:
        if result.failed and result.error_kind is ErrorKind.TOKEN and result.error:
            token_errors.setdefault(result.region, result.error)
    for region, error in token_errors.items():
        await alerts.token_failure(region, error)
