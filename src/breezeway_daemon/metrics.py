"""Prometheus metrics: what the daemon counts, and what ``/metrics`` shows.

One-line calls bump in-memory counters; ``DaemonCollector`` reads the daemon's state
at each scrape. Everything lives in this module's own ``REGISTRY``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from breezeway_daemon import __version__

if TYPE_CHECKING:
    from breezeway_daemon.config import Settings

# ``_created`` series double the output and say nothing a restart's counter reset does not.
disable_created_metrics()

# The rest of the code reports what happened in one line (``metrics.run_finished(result)``,
# ``metrics.api_answered(region, response)``, ...); these functions only bump in-memory counters, so
# they cost next to nothing whether or not anything scrapes the daemon. What the daemon already
# holds (the pool, the pacers, the health probe, the settings, the webhook receiver's counts) is
# read when ``/metrics`` is scraped, by ``DaemonCollector``; a scrape never queries the database.
# Last successes are read from ``etl_sync_log`` once at start (``health.py``) and updated from run
# results.
#
# Names follow Prometheus conventions: the ``breezeway_`` prefix, base units, ``_total`` counters,
# ``_seconds`` histograms. Labels are bounded: region, entity, outcome, status class, batch kind,
# alert kind; never ids or URLs. Process metrics are the library's default collectors. Everything
# lives in this module's own ``REGISTRY``.
REGISTRY = CollectorRegistry()
for _default in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_default)

RUN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600)
RECORD_OUTCOMES = ("new", "updated", "unchanged", "deleted", "rejected")

BUILD_INFO = Gauge(
    "breezeway_build_info", "Always 1; the daemon's version as a label.", ["version"],
    registry=REGISTRY,
)  # fmt: skip
BUILD_INFO.labels(__version__).set(1)
RUNS = Counter(
    "breezeway_runs", "Runs ended, by region, entity and outcome (success, failed, skipped).",
    ["region", "entity", "outcome"], registry=REGISTRY,
)  # fmt: skip
# By entity only: a histogram per region and entity would be most of a scrape's lines.
RUN_DURATION = Histogram(
    "breezeway_run_duration_seconds", "Wall time of runs that ran (success or failed).",
    ["entity"], buckets=RUN_BUCKETS, registry=REGISTRY,
)  # fmt: skip
RUN_LAST_DURATION = Gauge(
    "breezeway_run_last_duration_seconds",
    "Wall time of the last run of each region and entity that ran (success or failed).",
    ["region", "entity"], registry=REGISTRY,
)  # fmt: skip
RUN_STARTED = Gauge(
    "breezeway_run_started_timestamp_seconds",
    "Start time (Unix) of each run in progress in this process; absent when it runs none.",
    ["region", "entity"], registry=REGISTRY,
)  # fmt: skip
RECORDS = Counter(
    "breezeway_records",
    "Records handled by runs, by outcome (new, updated, unchanged, deleted, rejected).",
    ["region", "entity", "outcome"], registry=REGISTRY,
)  # fmt: skip
API_REQUESTS = Counter(
    "breezeway_api_requests",
    "Breezeway API data requests (every attempt), by status class (2xx..5xx; error: no answer).",
    ["region", "status_class"], registry=REGISTRY,
)  # fmt: skip
API_RATE_LIMITED = Counter(
    "breezeway_api_rate_limited", "429 answers of the Breezeway API.", ["region"],
    registry=REGISTRY,
)  # fmt: skip
API_RETRIES = Counter(
    "breezeway_api_retries", "Requests repeated after a 5xx, a timeout or a connection error.",
    ["region"], registry=REGISTRY,
)  # fmt: skip
TOKEN_RENEWALS = Counter(
    "breezeway_token_renewals", "Access-token renewals, by outcome (renewed, failed).",
    ["region", "outcome"], registry=REGISTRY,
)  # fmt: skip
BATCHES = Counter(
    "breezeway_batches",
    "Scheduled batches, by kind and outcome (ran; skipped: another daemon held the batch lock).",
    ["kind", "outcome"], registry=REGISTRY,
)  # fmt: skip
REAPED = Counter(
    "breezeway_watchdog_reaped_runs",
    "Runs the watchdog failed (no heartbeat, process gone, over the maximum run time).",
    ["region", "entity"], registry=REGISTRY,
)  # fmt: skip
WEBHOOK_PROCESSED = Counter(
    "breezeway_webhook_events_processed",
    "Webhook events the worker finished, by outcome (applied, unchanged, coalesced, deleted, "
    "kept, rejected, failed).",
    ["outcome"], registry=REGISTRY,
)  # fmt: skip
ALERTS = Counter(
    "breezeway_alerts", "Alerts, by kind and mail outcome (sent, failed, quiet, off, folded).",
    ["kind", "outcome"], registry=REGISTRY,
)  # fmt: skip

# (region, entity) -> Unix time of the pair's last successful run.
_last_success: dict[tuple[str, str], float] = {}


# --- what the rest of the code calls ------------------------------------------------------
class FinishedRun(Protocol):
    """What ``run_finished`` reads of a run's result (``sync.RunResult``)."""

    region: str
    entity: str
    status: str
    duration_s: float

    @property
    def counts(self) -> Any: ...


def run_started(region: str, entity: str) -> None:
    RUN_STARTED.labels(region, entity).set(time.time())


def run_finished(result: FinishedRun) -> None:
    """A run ended (or was never started: a failed parent). Durations are observed only
    for runs that ran; a success moves the pair's last-success time to now."""
    region, entity = result.region, result.entity
    with contextlib.suppress(KeyError):
        RUN_STARTED.remove(region, entity)
    RUNS.labels(region, entity, result.status).inc()
    if result.status in ("success", "failed") and result.duration_s > 0:
        RUN_DURATION.labels(entity).observe(result.duration_s)
        RUN_LAST_DURATION.labels(region, entity).set(result.duration_s)
    counts = result.counts
    for outcome in RECORD_OUTCOMES:
        number = getattr(counts, f"records_{outcome}", 0)
        if number:
            RECORDS.labels(region, entity, outcome).inc(number)
    if result.status == "success":
        _last_success[(region, entity)] = time.time()


class Answer(Protocol):
    """An HTTP response (``httpx.Response``): its status is all that is read."""

    status_code: int


def api_answered(region: str, response: Answer | None) -> None:
    """One API request attempt got ``response`` (None: timed out or no connection)."""
    status = None if response is None else response.status_code
    API_REQUESTS.labels(region, "error" if status is None else f"{status // 100}xx").inc()
    if status == 429:
        API_RATE_LIMITED.labels(region).inc()


def api_retry(region: str) -> None:
    API_RETRIES.labels(region).inc()


def token_renewal(region: str, renewed: bool) -> None:
    TOKEN_RENEWALS.labels(region, "renewed" if renewed else "failed").inc()


def batch_finished(kind: str, ran: bool) -> None:
    BATCHES.labels(kind, "ran" if ran else "skipped").inc()


class ReapedRun(Protocol):
    """What ``runs_reaped`` reads of a run the watchdog failed (``db.runs.StuckRun``)."""

    region: str
    entity: str


def runs_reaped(runs: Iterable[ReapedRun]) -> None:
    for run in runs:
        REAPED.labels(run.region, run.entity).inc()


def alert_delivered(kind: str, outcome: str) -> None:
    ALERTS.labels(kind, outcome).inc()


def webhook_events_processed(outcome: str, count: int) -> None:
    WEBHOOK_PROCESSED.labels(outcome).inc(count)


def load_last_successes(rows: Iterable[tuple[str, str, datetime]]) -> None:
    """Last successes read from ``etl_sync_log``; a newer one already known stays."""
    for region, entity, at in rows:
        key = (region, entity)
        _last_success[key] = max(_last_success.get(key, 0.0), at.timestamp())


def last_successes() -> dict[tuple[str, str], float]:
    return dict(_last_success)


# --- read at scrape time ------------------------------------------------------------------
class HealthView(Protocol):
    def database_up(self) -> bool: ...
    def scheduler_running(self) -> bool: ...

    @property
    def webhooks_pending(self) -> int | None: ...

    @property
    def last_answer_at(self) -> float | None: ...


class DaemonView(Protocol):
    """What the collector reads of the running daemon (``daemon.Daemon``): its settings,
    its pool and its sync context (whose ``api`` holds the pacers)."""

    pool: Any
    ctx: Any

    @property
    def settings(self) -> Settings: ...


def schedule_of(settings: Settings, entity: str) -> str | None:
    """``hourly`` or ``daily``: the batch that syncs ``entity`` (None: neither)."""
    if entity in settings.hourly_entities:
        return "hourly"
    if entity in settings.daily_entities:
        return "daily"
    return None


class DaemonCollector(Collector):
    """Series computed from the daemon's state at each scrape (no database query)."""

    def __init__(self, daemon: DaemonView, health: HealthView) -> None:
        self.daemon = daemon
        self.health = health

    def collect(self) -> Iterator[Metric]:
        settings = self.daemon.settings
        yield self._freshness(settings)
        yield from self._health()
        yield from self._pool(self.daemon.pool)
        ctx = self.daemon.ctx
        yield from self._api(settings, ctx.api if ctx is not None else None)
        yield from self._webhooks(getattr(self.daemon, "webhooks", None))

    def _freshness(self, settings: Settings) -> Metric:
        family = GaugeMetricFamily(
            "breezeway_last_success_timestamp_seconds",
            "Unix time of each enabled region and entity's last successful run; schedule is "
            "the batch that syncs it (hourly, daily). Absent until its first success.",
            labels=["region", "entity", "schedule"],
        )
        regions = settings.enabled_regions
        for (region, entity), at in sorted(_last_success.items()):
            schedule = schedule_of(settings, entity)
            if region in regions and schedule is not None:
                family.add_metric([region, entity, schedule], at)
        return family

    def _health(self) -> Iterator[Metric]:
        health = self.health
        yield GaugeMetricFamily(
            "breezeway_database_up",
            "1 when the database answered the health probe within the health window.",
            value=float(health.database_up()),
        )
        if health.last_answer_at is not None:
            yield GaugeMetricFamily(
                "breezeway_database_last_answer_timestamp_seconds",
                "Unix time the database last answered the health probe.",
                value=health.last_answer_at,
            )
        yield GaugeMetricFamily(
            "breezeway_scheduler_running",
            "1 while the daemon's scheduler runs.",
            value=float(health.scheduler_running()),
        )

    def _pool(self, pool: Any) -> Iterator[Metric]:
        if pool is None:
            return
        size, idle = pool.get_size(), pool.get_idle_size()
        for name, text, value in (
            ("breezeway_db_pool_max_size", "Connections the pool may open.", pool.get_max_size()),
            ("breezeway_db_pool_size", "Connections the pool holds open.", size),
            ("breezeway_db_pool_in_use", "Pool connections handed out now.", size - idle),
        ):
            yield GaugeMetricFamily(name, text, value=value)

    def _api(self, settings: Settings, api: Any) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "breezeway_api_rate_limit_per_minute",
            "The client's pacing: requests per rolling minute allowed per credential.",
            value=settings.requests_per_minute,
        )
        waited = CounterMetricFamily(
            "breezeway_api_pacer_wait_seconds",
            "Seconds requests waited for the credential's pacer (rate limit and 429 waits).",
            labels=["region"],
        )
        for region, pacer in sorted(pacers_of(api).items()):
            waited.add_metric([region], pacer.waited_s)
        yield waited

    def _webhooks(self, service: Any) -> Iterator[Metric]:
        """The receiver's counts since start, and the pending events the probe counted."""
        if service is None:
            return
        counts = service.receiver.counters
        received = CounterMetricFamily(
            "breezeway_webhook_events_received",
            "Webhook events accepted (valid, for a configured company), by kind.",
            labels=["kind"],
        )
        for kind, number in sorted(counts.received.items()):
            received.add_metric([kind], number)
        yield received
        refused = CounterMetricFamily(
            "breezeway_webhook_events_refused",
            "Webhook deliveries refused with a 4xx, by reason (wrong_secret, too_large...).",
            labels=["reason"],
        )
        for reason, number in sorted(counts.refused.items()):
            refused.add_metric([reason], number)
        yield refused
        yield CounterMetricFamily(
            "breezeway_webhook_events_not_stored",
            "Accepted webhook events answered 503: the database did not take them in time.",
            value=counts.store_failures,
        )
        if self.health.webhooks_pending is not None:
            yield GaugeMetricFamily(
                "breezeway_webhook_events_pending",
                "Webhook events stored and not yet applied (at the last health probe).",
                value=self.health.webhooks_pending,
            )


def pacers_of(api: Any) -> dict[str, Any]:
    """The API client's pacer per region (the client keeps one per credential)."""
    return dict(getattr(api, "_pacers", None) or {})


_watched: list[Collector] = []


def watch(daemon: DaemonView, health: HealthView) -> None:
    """Expose ``daemon``'s state at each scrape (replacing a daemon watched before).

    The counters alert rules watch start at 0 for every configured region and entity:
    a series born at 1 (the first failure after a start) is invisible to ``increase()``.
    """
    unwatch()
    _start_at_zero(daemon.settings)
    collector = DaemonCollector(daemon, health)
    REGISTRY.register(collector)
    _watched.append(collector)


def _start_at_zero(settings: Settings) -> None:
    entities = dict.fromkeys(settings.hourly_entities + settings.daily_entities)
    for region in settings.enabled_regions:
        API_RATE_LIMITED.labels(region)
        for outcome in ("renewed", "failed"):
            TOKEN_RENEWALS.labels(region, outcome)
        for entity in entities:
            REAPED.labels(region, entity)
            for outcome in ("success", "failed", "skipped"):
                RUNS.labels(region, entity, outcome)
    for kind in ("hourly", "daily"):
        for outcome in ("ran", "skipped"):
            BATCHES.labels(kind, outcome)


def unwatch() -> None:
    while _watched:
        with contextlib.suppress(KeyError):
            REGISTRY.unregister(_watched.pop())


def exposition(accept: str | None) -> tuple[bytes, str]:
    """The scrape's body and content type, in the format the scraper asked for."""
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept or "")
    return encoder(REGISTRY), content_type
