"""The webhook tests' environment: a synced database, the receiver in-process (and over
HTTP with ``served_app``), the worker; and a digest of every table an event could change."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import orjson
from starlette.applications import Starlette

from breezeway_daemon.config import Settings
from breezeway_daemon.sync import SyncContext, run_batch
from breezeway_daemon.webhooks.receiver import WebhookReceiver
from breezeway_daemon.webhooks.store import EventStore
from breezeway_daemon.webhooks.worker import EventWorker
from breezeway_sim import Simulator, SimulatorServer

from support.served import served_app
from support.simenv import settings_for

__all__ = ["SECRET", "Hooks", "hooks_for", "served_app", "table_digest"]

SECRET = "test-webhook-secret-0123456789abcdefXYZ"  # obviously fake


@dataclass
class Hooks:
    """A simulator, a synced database, the receiver (over ASGI) and a worker."""

    sim: Simulator
    settings: Settings
    ctx: SyncContext
    receiver: WebhookReceiver
    worker: EventWorker
    http: httpx.AsyncClient
    app: Starlette

    @property
    def pool(self) -> asyncpg.Pool:
        return self.ctx.pool

    @property
    def regions(self) -> dict[str, int]:
        return {name: r.company_id for name, r in self.settings.regions.items()}  # type: ignore[misc]

    async def post(self, kind: str, body: Any, secret: str = SECRET) -> httpx.Response:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        return await self.http.post(f"/webhooks/{secret}/{kind}", content=content)

    async def apply_all(self) -> None:
        while await self.worker.apply_pending():
            pass

    async def outcomes(self) -> list[tuple[int, str, str | None]]:
        rows = await self.pool.fetch(
            "SELECT entity_id, outcome, reason FROM breezeway.webhook_events ORDER BY id"
        )
        return [(r["entity_id"], r["outcome"], r["reason"]) for r in rows]

    def task_event(self, record: dict[str, Any], name: str = "task-updated", **extra: Any) -> dict:
        company = self.sim.companies[0].company_id
        return {"event": name, "company_id": company, "task_id": record["id"],
                "updated_at": record["updated_at"], "task": record, **extra}  # fmt: skip


@contextlib.asynccontextmanager
async def hooks_for(base: Settings, sim: Simulator, **overrides: Any) -> AsyncIterator[Hooks]:
    async with SimulatorServer(sim, port=0) as server:
        settings = settings_for(
            base, sim, server.base_url, webhook_secret=SECRET, http_max_attempts=2, **overrides
        )
        async with SyncContext.open(settings) as ctx:
            await run_batch(ctx, list(settings.regions), ["properties", "tasks"])
            store = EventStore(ctx.pool, settings.webhook_store_timeout_s)
            worker = EventWorker(ctx.pool, ctx.api, store, settings.webhook_strict)
            receiver = WebhookReceiver(settings, store, worker.wake)
            app = Starlette(routes=receiver.routes())
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://daemon") as http:
                yield Hooks(sim, settings, ctx, receiver, worker, http, app)
            await sim.webhooks.aclose()


async def table_digest(pool: asyncpg.Pool) -> tuple[Any, ...]:
    """Everything an event could change, as one comparable value."""
    return tuple(
        [
            await pool.fetchval(
                f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                f"FROM breezeway.{table} t"
            )
            for table in ("tasks", "properties", "rejected_records")
        ]
    )
