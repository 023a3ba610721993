"""Webhooks of the simulator: subscriptions, the test event, and deliveries as records change.

(``webhook_routes``: the API; ``WebhookHub``: subscriptions and deliveries.)
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .query import ApiError
from .records import fmt_ts, task_blob

if TYPE_CHECKING:
    from .companies import Company
    from .simulation import Simulator

__all__ = ["DeliveryFaults", "WebhookHub", "webhook_control_routes", "webhook_routes"]

WEBHOOK = "/public/webhook/v1"
TYPES = ("task", "property-status")
TEST_EVENT = {"event": "test_webhook_event"}


@dataclass
class Subscription:
    id: int
    company_id: int
    url: str
    webhook_type: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DeliveryFaults:
    """Shares (0..1) of events lost, duplicated and reordered; a delay before each POST."""

    lose_rate: float = 0.0
    duplicate_rate: float = 0.0
    reorder_rate: float = 0.0
    delay_s: float = 0.0

    def update(self, **changes: Any) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown delivery faults: {', '.join(sorted(unknown))}")
        for name, value in changes.items():
            number = float(value)
            if number < 0 or (name != "delay_s" and number > 1):
                raise ValueError(f"{name} out of range: {value!r}")
            setattr(self, name, number)


@dataclass
class Event:
    """One event as the hub sends it; ``log`` keeps these as dicts."""

    seq: int
    subscription_id: int
    company_id: int
    event: str
    entity_id: int
    updated_at: str | None
    changed_at: float
    body: bytes = field(repr=False, default=b"")
    outcome: str = "pending"  # pending, delivered, lost, failed
    status: int | None = None
    answered_s: float | None = None
    copies: int = 1

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["body"]
        return data


@dataclass
class _Snapshot:
    tasks: dict[int, int] = field(default_factory=dict)  # id -> TaskRow.version
    statuses: dict[int, str] = field(default_factory=dict)  # property id -> status


def is_loopback_url(url: str) -> bool:
    """True for http(s) URLs whose host is localhost or a loopback address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


class WebhookHub:
    """Subscriptions and deliveries of one simulator.

    Deliveries: whenever the clock moves records on (``Simulator.advance`` calls ``notice``),
    each company with a subscription is compared with what it looked like at the previous notice;
    a task that appeared, changed or vanished gives one ``task-created``/``task-updated``/
    ``task-deleted`` event carrying the task's current state (changes between two notices are
    folded into one event), a property whose status moved gives ``property-status-updated``.
    Events are POSTed by a background sender, ``max_in_flight`` at a time; a subscription whose
    deliveries fail ``drop_after_failures`` times in a row is dropped, as Breezeway does.

    ``hub.faults`` (``DeliveryFaults``; ``POST /_sim/webhooks/faults`` in control mode) loses,
    duplicates, reorders (holds an event back until after the next) and delays deliveries.
    ``hub.log`` records every event: when its change became visible (``changed_at``, epoch
    seconds), whether it was lost, and the answer (``GET /_sim/webhooks/log``).
    """

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.faults = DeliveryFaults()
        self.subscriptions: dict[int, Subscription] = {}
        self.log: list[Event] = []
        self.test_timeout_s = 10.0
        self.delivery_timeout_s = 10.0
        self.max_in_flight = 8
        self.drop_after_failures = 20
        self.rng = random.Random(sim.seed * 31 + 7)
        self._next_id = 1
        self._snapshots: dict[int, _Snapshot] = {}
        self._failures: dict[int, int] = {}
        self._queue: deque[Event] = deque()
        self._wake: asyncio.Event | None = None
        self._sender: asyncio.Task[None] | None = None
        self._held: Event | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None

    # --- subscriptions ----------------------------------------------------------
    async def subscribe(self, company: Company, webhook_type: str, url: str) -> Subscription:
        """Test the URL, then add (or answer the existing) subscription; ``ApiError`` if not."""
        if webhook_type not in TYPES:
            raise ApiError(422, "Unprocessable Entity", f"webhook_type must be one of {TYPES}")
        if not isinstance(url, str) or not is_loopback_url(url):
            raise ApiError(
                422, "Unprocessable Entity", "url must be an http(s) URL on a loopback host"
            )
        outcome = await self._post(url, orjson.dumps(TEST_EVENT), self.test_timeout_s)
        if not isinstance(outcome, int) or not 200 <= outcome < 300:
            raise ApiError(400, "Bad Request", f"the test event to the URL failed: {outcome}")
        for existing in self.subscriptions.values():
            if (existing.company_id, existing.webhook_type, existing.url) == (
                company.company_id,
                webhook_type,
                url,
            ):
                return existing
        sub = Subscription(self._next_id, company.company_id, url, webhook_type)
        self._next_id += 1
        self.subscriptions[sub.id] = sub
        self._snapshot(company.company_id)
        self._ensure_sender()
        return sub

    def unsubscribe(self, company: Company, subscription_id: int) -> None:
        sub = self.subscriptions.get(subscription_id)
        if sub is None or sub.company_id != company.company_id:
            raise ApiError(404, "Not Found", f"subscription {subscription_id} not found")
        del self.subscriptions[subscription_id]

    def of_company(self, company_id: int) -> list[Subscription]:
        return [s for s in self.subscriptions.values() if s.company_id == company_id]

    # --- noticing changes ---------------------------------------------------------
    def _snapshot(self, company_id: int) -> _Snapshot:
        data = self.sim.data(company_id)
        snap = _Snapshot(
            {tid: task.version for tid, task in data.tasks.items()},
            {pid: str(row.data.get("status")) for pid, row in data.properties.items()},
        )
        self._snapshots[company_id] = snap
        return snap

    def notice(self) -> int:
        """Queue an event per record changed since the last notice; answers how many."""
        changed_at = time.time()
        queued = 0
        for company_id in sorted({s.company_id for s in self.subscriptions.values()}):
            before = self._snapshots.get(company_id) or self._snapshot(company_id)
            after = self._snapshot(company_id)
            data = self.sim.data(company_id)
            for sub in self.of_company(company_id):
                if sub.webhook_type == "task":
                    for tid, version in after.tasks.items():
                        if before.tasks.get(tid) != version:
                            name = "task-created" if tid not in before.tasks else "task-updated"
                            task = orjson.loads(task_blob(data.ctx, data.tasks[tid]))
                            queued += self._queue_event(
                                sub, name, tid, task.get("updated_at"), changed_at, task
                            )
                    for tid in before.tasks.keys() - after.tasks.keys():
                        now = fmt_ts(self.sim.now(), False)
                        queued += self._queue_event(sub, "task-deleted", tid, now, changed_at)
                else:
                    for pid, status in after.statuses.items():
                        if pid in before.statuses and before.statuses[pid] != status:
                            queued += self._queue_property(sub, pid, status, changed_at)
        if queued:
            self._ensure_sender()
        return queued

    def _queue_event(
        self,
        sub: Subscription,
        name: str,
        task_id: int,
        updated_at: str | None,
        changed_at: float,
        task: dict[str, Any] | None = None,
    ) -> int:
        body = {
            "event": name,
            "company_id": sub.company_id,
            "task_id": task_id,
            "updated_at": updated_at,
            "task": task,
        }
        return self._enqueue(sub, name, task_id, updated_at, changed_at, body)

    def _queue_property(self, sub: Subscription, pid: int, status: str, changed_at: float) -> int:
        updated_at = fmt_ts(self.sim.now(), False)
        body: dict[str, Any] = {
            "event": "property-status-updated",
            "property_id": pid,
            "status": status,
            "updated_at": updated_at,
        }
        if pid % 2:  # "company_id sometimes present"
            body["company_id"] = sub.company_id
        return self._enqueue(sub, "property-status-updated", pid, updated_at, changed_at, body)

    def _enqueue(
        self,
        sub: Subscription,
        name: str,
        entity_id: int,
        updated_at: str | None,
        changed_at: float,
        body: dict[str, Any],
    ) -> int:
        event = Event(
            len(self.log) + 1,
            sub.id,
            sub.company_id,
            name,
            entity_id,
            updated_at,
            changed_at,
            orjson.dumps(body),
        )
        self.log.append(event)
        self._queue.append(event)
        return 1

    # --- sending -----------------------------------------------------------------
    def _ensure_sender(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # started by the next subscribe or notice made inside a loop
        if self._wake is None:
            self._wake = asyncio.Event()
        if self._sender is None or self._sender.done():
            self._sender = loop.create_task(self._send_all(), name="simulator-webhooks")
        self._wake.set()

    async def _send_all(self) -> None:
        assert self._wake is not None
        limit = asyncio.Semaphore(self.max_in_flight)
        while True:
            while self._queue or self._held:
                event = self._queue.popleft() if self._queue else None
                for ready in self._order(event):
                    await limit.acquire()
                    task = asyncio.create_task(self._deliver(ready, limit))
                    self._in_flight.add(task)
                    task.add_done_callback(self._in_flight.discard)
            self._wake.clear()
            await self._wake.wait()

    def _order(self, event: Event | None) -> list[Event]:
        """What to send now: faults may lose ``event``, hold it back, or repeat it."""
        faults, rng = self.faults, self.rng
        out: list[Event] = []
        if event is not None:
            if faults.lose_rate and rng.random() < faults.lose_rate:
                event.outcome = "lost"
            elif faults.reorder_rate and self._held is None and rng.random() < faults.reorder_rate:
                self._held = event
            else:
                out.append(event)
                if faults.duplicate_rate and rng.random() < faults.duplicate_rate:
                    event.copies = 2
                    out.append(event)
        if self._held is not None and (out or not self._queue):
            out.append(self._held)
            self._held = None
        return out

    async def _deliver(self, event: Event, limit: asyncio.Semaphore) -> None:
        try:
            sub = self.subscriptions.get(event.subscription_id)
            if sub is None:
                event.outcome = "lost"
                return
            if self.faults.delay_s:
                await asyncio.sleep(self.faults.delay_s)
            started = time.monotonic()
            outcome = await self._post(sub.url, event.body, self.delivery_timeout_s)
            event.answered_s = time.monotonic() - started
            ok = isinstance(outcome, int) and 200 <= outcome < 300
            event.status = outcome if isinstance(outcome, int) else None
            if event.outcome != "delivered":
                event.outcome = "delivered" if ok else "failed"
            self._count(sub, ok)
        finally:
            limit.release()

    def _count(self, sub: Subscription, ok: bool) -> None:
        if ok:
            self._failures[sub.id] = 0
            return
        failures = self._failures[sub.id] = self._failures.get(sub.id, 0) + 1
        if failures >= self.drop_after_failures:
            self.subscriptions.pop(sub.id, None)

    async def _post(self, url: str, body: bytes, limit_s: float) -> int | str:
        """The answer's status, or why there was none."""
        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        try:
            answer = await self._http.post(
                url,
                content=body,
                headers={"Content-Type": "application/json"},
                timeout=limit_s,
            )
        except httpx.TimeoutException:
            return f"no answer within {limit_s:g} s"
        except httpx.HTTPError as err:
            return f"{type(err).__name__}: {err}"
        return answer.status_code

    async def drain(self, within_s: float = 10.0) -> None:
        """Until every queued event was sent (or lost); for tests and benchmarks."""
        deadline = time.monotonic() + within_s
        while self._queue or self._held or self._in_flight:
            if time.monotonic() > deadline:
                raise TimeoutError("webhook deliveries still pending")
            await asyncio.sleep(0.01)

    async def aclose(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
            self._sender = None
        for task in list(self._in_flight):
            task.cancel()
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


Admit = Callable[[Request], Awaitable["Company"]]
Endpoint = Callable[[Request], Awaitable[Response]]


def webhook_routes(
    hub: WebhookHub, admit: Admit, guard: Callable[[Endpoint], Endpoint]
) -> list[Route]:
    """The ``/public/webhook/v1`` routes; ``admit`` is the data-request gate (token, limits).

    API (``/public/webhook/v1``, a data token required, as in BREEZEWAY_API.md):

    ``POST   /subscribe``          ``{"webhook_type": "task"|"property-status", "url": ...}``; the
                                   test event ``{"event": "test_webhook_event"}`` is POSTed to the
                                   URL first and must answer 2xx within ``test_timeout_s``, else
                                   ``400 {"error": "Bad Request", "description": <why>}`` (decided
                                   here). Subscribing the same type and URL again answers the
                                   existing subscription.
    ``GET    /subscriptions``      the company's subscriptions, a plain array
    ``DELETE /subscribe/{id}``     ``204``; ``404`` when the company has no such subscription

    Only loopback URLs are accepted (decided here: the simulator never contacts another host).
    """

    async def subscribe(request: Request) -> Response:
        company = await admit(request)
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise ApiError(400, "Bad Request", "body must be JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "Bad Request", "body must be a JSON object")
        wanted = body.get("company_id")
        if wanted is not None and wanted != company.company_id:
            raise ApiError(403, "Forbidden", f"company_id {wanted} is not accessible")
        sub = await hub.subscribe(company, body.get("webhook_type"), body.get("url"))
        return _json({"message": "Subscription successful", **sub.as_json()})

    async def listing(request: Request) -> Response:
        company = await admit(request)
        return _json([s.as_json() for s in hub.of_company(company.company_id)])

    async def unsubscribe(request: Request) -> Response:
        company = await admit(request)
        hub.unsubscribe(company, request.path_params["sub_id"])
        return Response(status_code=204)

    return [
        Route(WEBHOOK + "/subscribe", guard(subscribe), methods=["POST"]),
        Route(WEBHOOK + "/subscribe/", guard(subscribe), methods=["POST"]),
        Route(WEBHOOK + "/subscriptions", guard(listing), methods=["GET"]),
        Route(WEBHOOK + "/subscriptions/", guard(listing), methods=["GET"]),
        Route(WEBHOOK + "/subscribe/{sub_id:int}", guard(unsubscribe), methods=["DELETE"]),
    ]


def webhook_control_routes(hub: WebhookHub) -> list[Route]:
    """``GET/POST /_sim/webhooks/faults``, ``GET /_sim/webhooks/log``,
    ``POST /_sim/webhooks/notice`` (queue events for changes made since the last notice)."""

    async def get_faults(request: Request) -> Response:
        return _json(asdict(hub.faults))

    async def set_faults(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body() or b"{}")
            hub.faults.update(**body)
        except (ValueError, TypeError) as exc:
            return _json({"error": "Unprocessable Entity", "description": str(exc)}, 422)
        return _json(asdict(hub.faults))

    async def log(request: Request) -> Response:
        return _json([event.as_json() for event in hub.log])

    async def notice(request: Request) -> Response:
        return _json({"queued": hub.notice()})

    return [
        Route("/_sim/webhooks/faults", get_faults, methods=["GET"]),
        Route("/_sim/webhooks/faults", set_faults, methods=["POST"]),
        Route("/_sim/webhooks/log", log, methods=["GET"]),
        Route("/_sim/webhooks/notice", notice, methods=["POST"]),
    ]
