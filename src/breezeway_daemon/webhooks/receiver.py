"""The webhook routes: ``POST /webhooks/<secret>/task`` and ``/webhooks/<secret>/property-status``.

Breezeway signs nothing, so the URL is the credential (``WebhookReceiver``).
"""

from __future__ import annotations

import hmac
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from breezeway_daemon.config import Settings
from breezeway_daemon.errors import DatabaseError, describe
from breezeway_daemon.privacy import FieldDrop
from breezeway_daemon.records import RecordRejected, dumps, loads, to_timestamptz
from breezeway_daemon.webhooks.store import EventStore, ReceivedEvent, StoreUnavailable

log = structlog.get_logger(__name__)

__all__ = ["KINDS", "Refused", "WebhookCounters", "WebhookReceiver", "parse_event"]

KINDS = ("task", "property-status")
TEST_EVENT = "test_webhook_event"


@dataclass
class WebhookCounters:
    """Counts since start: received per kind, stored, refused per reason, store failures."""

    received: Counter[str] = field(default_factory=Counter)
    stored: int = 0
    tests: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    store_failures: int = 0


class Refused(Exception):
    """A delivery refused with ``status``; ``reason`` is a short word for logs and counters."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


def _timestamp(value: Any) -> datetime | None:
    try:
        return to_timestamptz(value) if value is not None else None
    except RecordRejected:
        return None


def parse_event(
    kind: str,
    body: bytes,
    companies: dict[int, str],
    property_regions: dict[int, str],
    drop: FieldDrop | None = None,
) -> ReceivedEvent | None:
    """The event a body carries, None for the test event; ``Refused`` when unacceptable.

    ``companies`` maps configured company ids to regions; ``property_regions`` the
    region of a property named by a property-status event without ``company_id``.
    ``drop``: the tasks' fields never stored (``BREEZEWAY_DROP_FIELDS``), taken out of
    the task before the event is stored.
    """
    try:
        data = loads(body)
    except ValueError:
        raise Refused(400, "not_json", "the body is not JSON") from None
    if not isinstance(data, dict):
        raise Refused(400, "not_object", "the body is not a JSON object")
    name = data.get("event")
    if name == TEST_EVENT:
        return None
    if not isinstance(name, str) or not name or len(name) > 100:
        raise Refused(422, "no_event", "no event name")
    company = data.get("company_id")
    region = companies.get(company) if _int(company) is not None else None
    if company is not None and region is None:
        raise Refused(422, "unknown_company", f"company {str(company)[:20]!r} is not configured")
    if kind == "task":
        entity_id = _int(data.get("task_id"))
        task = data.get("task")
        if entity_id is None and isinstance(task, dict):
            entity_id = _int(task.get("id"))
        if entity_id is None:
            raise Refused(422, "no_id", "no task_id")
        if task is not None and (not isinstance(task, dict) or task.get("id") != entity_id):
            raise Refused(422, "bad_task", "task is not an object with the event's task_id")
        if region is None:
            raise Refused(422, "unknown_company", "no company_id")
        updated = data.get("updated_at")
        if updated is None and isinstance(task, dict):
            updated = task.get("updated_at")
        if drop and isinstance(task, dict) and (kept := drop.apply(task)) is not task:
            body = dumps({**data, "task": kept})
    else:
        entity_id = _int(data.get("property_id"))
        if entity_id is None:
            raise Refused(422, "no_id", "no property_id")
        region = region or property_regions.get(entity_id)
        if region is None:
            raise Refused(422, "unknown_property", f"property {entity_id} is not stored")
        updated = data.get("updated_at")
    return ReceivedEvent(region, kind, entity_id, name, _timestamp(updated), body)


class WebhookReceiver:
    """The routes and what they need. ``companies`` (company id -> region) is set by the
    daemon from the configuration and the API; ``on_stored`` wakes the worker.

    Breezeway signs nothing, so the URL is the credential: the secret path segment is compared in
    constant time (``hmac.compare_digest``) and never logged. A request is refused with a 4xx and
    one log line, touching no data, when the secret is wrong (404, as for any unknown path), the
    body is over ``webhook_max_body_kib`` (413), not JSON or not an object (400), or names no
    configured company, no task or property id (422). ``{"event": "test_webhook_event"}`` answers
    200 and is not stored.

    An accepted event is committed to ``webhook_events`` before the 200 (durable before
    acknowledged), within ``webhook_store_timeout_s``; when it cannot be, the answer is 503 and
    polling repairs what the event said. Then the worker is woken.
    """

    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        on_stored: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.on_stored = on_stored
        self.counters = WebhookCounters()
        self.companies: dict[int, str] = configured_companies(settings)
        self.task_drop = settings.field_drops.get("tasks")  # parsed once, not per delivery

    def update_settings(self, settings: Settings) -> None:
        self.settings = settings
        self.task_drop = settings.field_drops.get("tasks")
        self.companies = {**self.companies, **configured_companies(settings)}
        self.store.timeout_s = settings.webhook_store_timeout_s

    def routes(self) -> list[Route]:
        return [Route("/webhooks/{secret}/{kind}", self.receive, methods=["POST"])]

    async def receive(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        try:
            self._check_secret(request.path_params["secret"], kind)
            body = await self._body(request)
            event = parse_event(
                kind, body, self.companies, await self._property_regions(body),
                self.task_drop,
            )  # fmt: skip
        except Refused as refused:
            self.counters.refused[refused.reason] += 1
            log.warning(
                "webhook_refused",
                kind=kind if kind in KINDS else "?",
                reason=refused.reason,
                detail=refused.detail,
                peer=request.client.host if request.client else None,
            )
            return JSONResponse({"error": refused.detail}, refused.status)
        if event is None:
            self.counters.tests += 1
            log.info("webhook_test_event", kind=kind)
            return JSONResponse({"ok": True})
        self.counters.received[kind] += 1
        try:
            event_id = await self.store.record(event)
        except StoreUnavailable as err:
            self.counters.store_failures += 1
            log.error("webhook_not_stored", kind=kind, region=event.region, error=str(err),
                      remedy="answered 503; the next poll repairs what the event said")  # fmt: skip
            return JSONResponse({"error": "not stored, try later"}, 503)
        self.counters.stored += 1
        self.on_stored()
        return JSONResponse({"ok": True, "id": event_id})

    def _check_secret(self, given: str, kind: str) -> None:
        secret = self.settings.webhook_secret
        expected = secret.get_secret_value() if secret is not None else None
        # Compared even when unset, so that timing says nothing either way.
        same = hmac.compare_digest(given.encode(), (expected or "\x00" * 32).encode())
        if not same or expected is None:
            raise Refused(404, "wrong_secret", "not found")
        if kind not in KINDS:
            raise Refused(404, "unknown_kind", "not found")

    async def _body(self, request: Request) -> bytes:
        limit = self.settings.webhook_max_body_kib * 1024
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise Refused(413, "too_large", f"body over {limit} bytes")
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise Refused(413, "too_large", f"body over {limit} bytes")
        except ClientDisconnect:
            raise Refused(400, "disconnected", "the client went away") from None
        return bytes(body)

    async def _property_regions(self, body: bytes) -> dict[int, str]:
        """For a property-status event without company_id: the stored property's region."""
        if b"property_id" not in body or b'"company_id"' in body:
            return {}
        try:
            data = loads(body)
            pid = _int(data.get("property_id")) if isinstance(data, dict) else None
        except ValueError:
            return {}
        if pid is None:
            return {}
        regions = list(self.settings.enabled_regions)
        if len(regions) == 1:
            return {pid: regions[0]}
        try:
            rows = await self.store.pool.fetch(
                "SELECT region_code FROM breezeway.properties "
                "WHERE id = $1 AND region_code = ANY($2::text[])",
                pid,
                regions,
            )
        except (DatabaseError, asyncpg.InterfaceError, OSError) as err:
            log.warning("webhook_property_lookup_failed", error=describe(err))
            return {}
        return {pid: rows[0]["region_code"]} if len(rows) == 1 else {}


def configured_companies(settings: Settings) -> dict[int, str]:
    """Company id -> region, for enabled regions whose company id is configured."""
    return {
        region.company_id: name
        for name, region in settings.enabled_regions.items()
        if region.company_id is not None
    }
