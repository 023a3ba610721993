"""The webhook parts of a running daemon: the receiver's route on the HTTP listener, the
event worker, and the check that warns when a subscribed region falls silent.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from breezeway_daemon.alerts.kinds import AlertEntry, AlertKind
from breezeway_daemon.alerts.messages import Alert
from breezeway_daemon.config import Settings
from breezeway_daemon.errors import describe
from breezeway_daemon.redact import hold_tokens
from breezeway_daemon.webhooks.receiver import WebhookReceiver
from breezeway_daemon.webhooks.store import EventStore, region_summary
from breezeway_daemon.webhooks.subscriptions import Subscriptions
from breezeway_daemon.webhooks.worker import EventWorker

log = structlog.get_logger(__name__)

__all__ = ["ROUTE", "WebhookService"]

ROUTE = "/webhooks/{secret}/{kind}"
SILENCE_CHECK_S = 3600.0


class WebhookService:
    """Receiver, worker and silence check of one daemon.

    ``WebhookService.start(daemon)`` (before ``READY=1``) does nothing unless
    ``BREEZEWAY_WEBHOOK_SECRET`` is set. The route needs the listener (``BREEZEWAY_HTTP_LISTEN``);
    without it the worker still applies events left pending by an earlier process, and a warning
    says the receiver is off.

    Silence: every ``SILENCE_CHECK_S`` the service lists each region's subscriptions (one API call
    per region) and, for a region that has one, warns (alert kind ``warning``, entity ``webhooks``)
    when no event arrived for ``webhook_silence_hours`` (counted from the daemon's start when none
    ever did): Breezeway drops subscriptions whose endpoint keeps failing, and polling then carries
    the region alone.
    """

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        settings: Settings = daemon.settings
        self.store = EventStore(daemon.pool, settings.webhook_store_timeout_s)
        self.worker = EventWorker(daemon.pool, daemon.ctx.api, self.store, settings.webhook_strict)
        self.receiver = WebhookReceiver(settings, self.store, self.worker.wake)
        self.started_at = datetime.now(UTC)
        self._tasks: list[asyncio.Task[Any]] = []

    @classmethod
    async def start(cls, daemon: Any) -> WebhookService | None:
        settings: Settings = daemon.settings
        if settings.webhook_secret is None:
            return None
        hold_tokens(settings.webhook_secret.get_secret_value())  # masked wherever scrubbed
        service = cls(daemon)
        listener = getattr(daemon, "http", None)
        if listener is None:
            log.warning("webhook_receiver_off", reason="BREEZEWAY_HTTP_LISTEN is not set",
                        detail="pending events are still applied; new ones cannot arrive")  # fmt: skip
        else:
            listener.add_route(ROUTE, service.receiver.receive, methods=["POST"])
            log.info("webhook_receiver_on", kinds=["task", "property-status"])
        loop = asyncio.get_running_loop()
        service._tasks = [
            loop.create_task(service.worker.run(), name="webhook-worker"),
            loop.create_task(service._resolve_companies(), name="webhook-companies"),
            loop.create_task(service._watch_silence(), name="webhook-silence"),
        ]
        return service

    def update_settings(self, settings: Settings) -> None:
        """A reload: a new secret is served (and masked) at once; without one, every
        delivery is refused (404) until the next restart turns the receiver off."""
        if settings.webhook_secret is not None:
            hold_tokens(settings.webhook_secret.get_secret_value())
        self.receiver.update_settings(settings)
        self.worker.strict = settings.webhook_strict

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _resolve_companies(self) -> None:
        """Regions without a configured company id: their company, asked of the API once."""
        settings: Settings = self.daemon.settings
        for region, config in settings.enabled_regions.items():
            if config.company_id is not None:
                continue
            try:
                company = await self.daemon.ctx.api.client(region).company_id()
            except Exception as err:  # noqa: BLE001 - its events are refused until known
                log.warning("webhook_company_unknown", region=region, error=describe(err))
                continue
            if company is not None:
                self.receiver.companies[company] = region

    async def _watch_silence(self) -> None:
        while True:
            await asyncio.sleep(SILENCE_CHECK_S)
            try:
                await self.check_silence()
            except Exception as err:  # noqa: BLE001 - the next check tries again
                log.warning("webhook_silence_check_failed", error=describe(err))

    async def check_silence(self) -> list[str]:
        """Warn about subscribed regions with no event for ``webhook_silence_hours``."""
        settings: Settings = self.daemon.settings
        limit = timedelta(hours=settings.webhook_silence_hours)
        now = datetime.now(UTC)
        subs = Subscriptions(settings, self.daemon.ctx.api)
        summary = await region_summary(self.daemon.pool, list(settings.enabled_regions))
        silent = []
        for region, events in summary.items():
            last = events.last_event_at or self.started_at
            if now - last < limit or not await subs.list(region):
                continue
            silent.append(region)
            hours = (now - last).total_seconds() / 3600
            subject = f"⚠️ ETL WARNING: {region}: no webhook event for {hours:.1f} h"
            body = (
                f"Region {region} has a webhook subscription but no event arrived for "
                f"{hours:.1f} hours (last: {events.last_event_at or 'none since the start'}).\n"
                "Breezeway drops a subscription whose endpoint keeps failing. Polling still "
                "keeps the data (hourly), only slower. Check the proxy and the listener, then:\n"
                f"  breezeway-daemon webhooks list\n"
                f"  breezeway-daemon webhooks subscribe {region} --url <public base URL>"
            )
            entry = AlertEntry(AlertKind.WARNING, region, "webhooks", None, "api", subject)
            if self.daemon.alerts is not None:
                await self.daemon.alerts.warning(Alert(subject, body, [entry]))
        return silent
