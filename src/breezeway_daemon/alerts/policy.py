"""When an alert is mailed: batch folding, the quiet period, recoveries. Never raises."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from breezeway_daemon import metrics
from breezeway_daemon.alerts import messages
from breezeway_daemon.alerts.delivery import AlertsLog, mail_configured, send_mail
from breezeway_daemon.alerts.history import AlertHistory
from breezeway_daemon.alerts.kinds import AlertKey, AlertKind, MailStatus
from breezeway_daemon.alerts.messages import Alert
from breezeway_daemon.config import Settings
from breezeway_daemon.db.runs import StuckRun
from breezeway_daemon.errors import ErrorKind, describe
from breezeway_daemon.redact import configured_secrets, scrub
from breezeway_daemon.sync import RunResult

log = structlog.get_logger(__name__)

PENDING_MAX_AGE_S = 86_400.0  # folded alerts whose batch never finished are dropped


@dataclasses.dataclass
class _Folded:
    """An alert of a batch run, waiting for its batch's digest."""

    alert: Alert
    at: float = dataclasses.field(default_factory=time.monotonic)


class Alerts:
    """Email and ``alerts.log`` alerts for runs, batches, stuck runs and tokens.

    Every alert is logged to ``alerts.log`` and recorded in the history. It is mailed
    unless an alert with the same key (kind, region, entity) was mailed within
    ``alert_quiet_hours``; an undelivered mail does not count. An alert about several
    pairs (a summary, stuck runs) is mailed when at least one pair is fresh.

    ``run_finished(result, in_batch=True)`` folds the run's alerts (logged and
    recorded, not mailed) until ``batch_finished`` mails at most three for the batch:
    its failure (one failed run, under its own ``🚨 ETL FAILURE`` subject) or the
    ``📊`` summary of its failures, one ``⚠️`` digest and one ``✅`` digest.

    No public method raises: a broken mail server, an unwritable ``alerts.log``, an
    unreachable database or a fault of its own is logged, and the next alert tries
    again. Subjects and bodies pass through ``scrub`` (configured secrets, URL
    passwords, tokens); no record is ever put into an alert.
    """

    def __init__(self, settings: Settings, pool: asyncpg.Pool | None) -> None:
        self.settings = settings
        self._secrets = configured_secrets(settings)
        self.history = AlertHistory(pool)
        self._log = AlertsLog()
        self._folded: dict[tuple[str, str, int | None], list[_Folded]] = {}

    def update_settings(self, settings: Settings) -> None:
        """Use new settings (SIGHUP) from the next alert on."""
        self.settings = settings
        self._secrets = configured_secrets(settings)

    @contextlib.contextmanager
    def _never_raise(self, what: str, **context: Any) -> Iterator[None]:
        try:
            yield
        except Exception as err:  # noqa: BLE001 - alerting must never fail a sync
            log.error("alert_failed", what=what, error=self._scrub(describe(err)),
                      exc_info=True, **context)  # fmt: skip

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    # --- public API -----------------------------------------------------------------
    async def run_finished(self, result: RunResult, *, in_batch: bool = False) -> None:
        """Alert on one run: failure, warnings, recovery. ``in_batch``: fold into the digest."""
        with self._never_raise("run_finished", region=result.region, entity=result.entity):
            if result.status == "failed":
                await self._deliver(messages.failure(self.settings, result), fold=in_batch)
                self.history.raised(result.region, result.entity)
            elif result.status == "success":
                await self._run_succeeded(result, in_batch)

    async def batch_finished(self, job_type: str, results: Sequence[RunResult]) -> None:
        """After a batch whose runs were passed to ``run_finished``: its failure, or the
        summary of its failures, then its warning and recovery digests."""
        job_type = messages.one_line(job_type)
        with self._never_raise("batch_finished", job_type=job_type):
            folded = self._claim_folded(results)
            failures = [result for result in results if result.failed]
            if len(failures) == 1:
                # Mailed as itself, under the runbook's own subject (operators filter on
                # it); a failure that was not folded was mailed on its own already.
                for alert in self._of_kind(folded, AlertKind.FAILURE):
                    await self._deliver(alert)
            elif failures:
                await self._summary(job_type, failures, len(results), folded)
            await self._digest(job_type, folded, AlertKind.WARNING, "⚠️ ETL WARNING", "runs")
            await self._digest(job_type, folded, AlertKind.RECOVERED, "✅ ETL RECOVERED", "pairs")

    async def stuck_runs(self, runs: Sequence[StuckRun]) -> None:
        """Runs the watchdog found stuck: one alert for the sweep."""
        if not runs:
            return
        with self._never_raise("stuck_runs"):
            alert = messages.stuck_runs(runs)
            await self._deliver(alert)
            for entry in alert.entries:
                self.history.raised(entry.region, entry.entity)

    async def token_failure(self, region: str, error: str | BaseException) -> None:
        """The region's credential could not get a token."""
        with self._never_raise("token_failure", region=region):
            text = describe(error) if isinstance(error, BaseException) else str(error)
            await self._deliver(messages.token_failure(self.settings, region, text))

    async def warning(self, alert: Alert) -> None:
        """A warning built by another part of the daemon (webhooks falling silent)."""
        with self._never_raise("warning", region=alert.entries[0].region):
            await self._deliver(alert)

    # --- runs and batches -------------------------------------------------------------
    async def _run_succeeded(self, result: RunResult, in_batch: bool) -> None:
        since = await self.history.alerting_since(self.settings, result.region, result.entity)
        if since is not None:
            await self._deliver(messages.recovery(result, since), fold=in_batch)
            self.history.recovered(result.region, result.entity)
        previous = None
        if result.listing_size is not None:
            previous = await self.history.swap_listing_size(self.settings, result)
        causes = messages.warning_causes(self.settings, result, previous)
        if causes:
            await self._deliver(messages.warning(self.settings, result, causes), fold=in_batch)

    async def _summary(
        self, job_type: str, failures: list[RunResult], total: int, folded: list[_Folded]
    ) -> None:
        # A failure folded by run_finished has a history row to update; one that was
        # not (the caller mailed it on its own) is listed but not recorded again.
        rows = {
            (entry.region, entry.entity, entry.run_id): entry
            for f in folded
            for entry in f.alert.entries
            if entry.kind is AlertKind.FAILURE
        }
        entries = [
            rows.get((r.region, r.entity, r.run_id)) or messages.failure_entry(r, record=False)
            for r in failures
        ]
        last = await self.history.last_mailed(self.settings, entries)
        mailed = [last[entry.key] for entry in entries]
        alert = messages.summary(self.settings, job_type, failures, total, entries, mailed)
        await self._deliver(alert, last=last)

    async def _digest(
        self, job_type: str, folded: list[_Folded], kind: AlertKind, prefix: str, noun: str
    ) -> None:
        alerts = self._of_kind(folded, kind)
        if alerts:
            await self._deliver(messages.digest(job_type, alerts, prefix, noun))

    @staticmethod
    def _of_kind(folded: list[_Folded], kind: AlertKind) -> list[Alert]:
        return [f.alert for f in folded if f.alert.entries[0].kind is kind]

    def _claim_folded(self, results: Sequence[RunResult]) -> list[_Folded]:
        """The folded alerts of these runs, in the results' order; older leftovers dropped."""
        claimed: list[_Folded] = []
        for result in results:
            claimed += self._folded.pop((result.region, result.entity, result.run_id), [])
        cutoff = time.monotonic() - PENDING_MAX_AGE_S
        for key in [k for k, v in self._folded.items() if all(f.at < cutoff for f in v)]:
            del self._folded[key]
        return claimed

    # --- delivery -----------------------------------------------------------------------
    async def _deliver(
        self,
        alert: Alert,
        *,
        fold: bool = False,
        last: dict[AlertKey, datetime | None] | None = None,
    ) -> None:
        """Mail (unless off, folded or quiet), log to alerts.log, record in the history."""
        at = datetime.now(UTC)
        settings = self.settings
        alert = dataclasses.replace(
            alert,
            subject=self._scrub(messages.one_line(alert.subject)),
            body=self._scrub(alert.body),
        )
        if fold:
            status = MailStatus.FOLDED
            note = "folded into the batch's digest (mailed after the batch)"
        elif not mail_configured(settings):
            status, note = MailStatus.OFF, "not sent (SMTP is not configured)"
        else:
            if last is None:
                last = await self.history.last_mailed(settings, alert.entries)
            quiet = [last[entry.key] for entry in alert.entries]
            if all(mailed is not None for mailed in quiet):
                latest = max(m for m in quiet if m is not None)
                status = MailStatus.QUIET
                note = (
                    f"not sent (quiet period: the same alert was mailed at "
                    f"{messages.when(latest)}; quiet for {settings.alert_quiet_hours:g} h)"
                )
            else:
                error = await send_mail(settings, alert.subject, alert.body, alert.header_label)
                if error is None:
                    status, note = MailStatus.SENT, f"sent to {', '.join(settings.alert_to)}"
                else:
                    status = MailStatus.FAILED
                    note = f"NOT sent: {error} (the next alert tries again)"
        metrics.alert_delivered(alert.header_label, status)
        await self._log.append(settings, at, alert.subject, f"{alert.body}\n\nmail: {note}")
        await self.history.record(settings, alert.entries, status)
        if fold:
            for entry in alert.entries:
                key = (entry.region, entry.entity, entry.run_id)
                self._folded.setdefault(key, []).append(_Folded(alert))


async def report_batch(alerts: Alerts, job_type: str, results: Sequence[RunResult]) -> None:
    """Every alert a finished batch calls for: per-run alerts folded into the batch's,
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
