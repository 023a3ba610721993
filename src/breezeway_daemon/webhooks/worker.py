"""The event worker: applies pending ``webhook_events`` in order of arrival, through the
same loader as polling, never blindly (``EventWorker``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from breezeway_daemon.api.client import BreezewayApi
from breezeway_daemon.api.errors import ApiError
from breezeway_daemon.db.entity_table import entity_table
from breezeway_daemon.db.loader import Loader
from breezeway_daemon.db.runs import advisory_lock_key, try_lock
from breezeway_daemon.entities import PROPERTIES, TASKS, EntitySpec
from breezeway_daemon.errors import DatabaseError, describe
from breezeway_daemon.records import (
    RecordRejected,
    content_hash,
    loads,
    record_id,
    serialize,
    to_timestamptz,
)
from breezeway_daemon.webhooks.store import EventStore, StoredEvent

log = structlog.get_logger(__name__)

__all__ = ["EventWorker", "WorkerCounts"]

BATCH = 500
IDLE_CHECK_S = 5.0  # pending events of another process (or from before a restart)
RETRY_S = 5.0
WORKER_LOCK = advisory_lock_key("breezeway-webhook-worker")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class WorkerCounts:
    """Outcomes since start, per outcome name."""

    outcomes: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: str, n: int = 1) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n


@dataclass
class _Candidate:
    """A task record to store, and the event it came from."""

    event: StoredEvent
    record: Mapping[str, Any]
    outcome: str = "applied"


class EventWorker:
    """Applies pending events; ``wake()`` after storing one, ``run()`` as a task.

    A batch of pending events is taken in order of ``id`` and grouped per region, kind and record;
    several events of one record are coalesced into the newest (by the event's last-updated time,
    then arrival), the others marked ``coalesced``. Then, for a task:

    * ``task-deleted`` is confirmed with ``GET /task/{id}``: a 404 sets ``deleted_at``; a task that
      still exists is stored as the API answered (``kept``);
    * any other event is applied from its payload (the task's whole current state), unless
      ``webhook_strict`` is on or the payload lacks the task or its ``updated_at``: then the task is
      re-read with ``GET /task/{id}`` (404: deleted, as above). API cost: none per event by default;
      one call per coalesced task event in strict mode;
    * the record must pass the loader's own typed-column conversion, else ``rejected`` with the
      reason (nothing written, not even ``rejected_records``);
    * a record whose ``updated_at`` is not newer than the stored row's, or whose content is the
      stored content, changes nothing (``unchanged``);
    * the rest go through ``Loader.load`` in one transaction per region and batch; a task whose
      property is not stored yet is ``failed`` (the next poll stores both).

    A property-status event refreshes the property from the API: the property listing for its new
    status is paged (``GET /property?status=...``, one listing per status and batch) and the
    property's record stored through the loader.

    The loader's upsert itself never replaces a row with an older ``updated_at`` (see
    ``db/loader.py``), so a poll and the worker writing one task at the same moment keep the newer
    state whichever commits last. Events survive restarts: pending ones are applied by the next
    worker. A failure of the API marks the events ``failed`` (the next poll repairs the record); a
    failure of the database leaves them pending and is retried.
    """

    def __init__(self, pool: asyncpg.Pool, api: BreezewayApi, store: EventStore, strict: bool):
        self.pool = pool
        self.api = api
        self.store = store
        self.strict = strict
        self.counts = WorkerCounts()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def _loader(self, spec: EntitySpec, region: str) -> Loader:
        """A loader that drops the fields the configuration says never to store."""
        drop = self.api.settings.field_drops.get(spec.name)
        return Loader(self.pool, spec, region, drop=drop)

    async def run(self) -> None:
        """Apply events as they come, until cancelled; one worker per database at a time
        (the others wait, saying so once: ``webhook_worker_standby``)."""
        standby = False
        while True:
            try:
                async with self.pool.acquire() as lock_conn:
                    if await try_lock(lock_conn, WORKER_LOCK):
                        standby = False
                        try:
                            await self._serve()
                        finally:
                            with contextlib.suppress(Exception):
                                await lock_conn.execute(
                                    "SELECT pg_advisory_unlock($1)", WORKER_LOCK
                                )
                    elif not standby:
                        standby = True
                        log.info("webhook_worker_standby", retry_s=RETRY_S,
                                 detail="another worker holds the lock of this database")  # fmt: skip
            except (DatabaseError, asyncpg.InterfaceError, OSError) as err:
                log.warning("webhook_worker_waiting", error=describe(err), retry_s=RETRY_S)
            except Exception as err:  # noqa: BLE001 - the worker must outlive any one failure
                log.error("webhook_worker_failed", error=describe(err), retry_s=RETRY_S)
            await self.idle(RETRY_S)

    async def _serve(self) -> None:
        """Events left pending (by a process that stopped or died) first, then as they come:
        ``webhook_worker_on`` says how many were left."""
        left = 0
        while processed := await self.apply_pending():
            left += processed
        log.info("webhook_worker_on", pending_applied=left)
        while True:
            while await self.apply_pending():
                pass
            await self.idle(IDLE_CHECK_S)

    async def idle(self, seconds: float) -> None:
        """Until woken (an event was stored) or ``seconds`` passed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def apply_pending(self) -> int:
        """Apply one batch of pending events; how many were processed (0: none pending)."""
        events = await self.store.pending(BATCH)
        groups: dict[tuple[str, str], dict[int, list[StoredEvent]]] = {}
        for event in events:
            groups.setdefault((event.region, event.kind), {}).setdefault(
                event.entity_id, []
            ).append(event)
        for (region, kind), by_record in groups.items():
            latest = await self._coalesce(by_record)
            try:
                if kind == "task":
                    await self._apply_tasks(region, latest)
                else:
                    await self._apply_properties(region, latest)
            except (DatabaseError, asyncpg.InterfaceError, OSError):
                raise  # left pending: applied once the database answers again
            except Exception as err:  # noqa: BLE001 - an API failure, or an event that cannot
                # be applied: marked failed (the next poll repairs the record), never retried
                # forever
                what = "the API failed" if isinstance(err, ApiError) else "cannot apply"
                await self._finish(latest, "failed", f"{what}: {describe(err)}")
                log.warning("webhook_events_failed", region=region, kind=kind,
                            events=len(latest), error=describe(err))  # fmt: skip
        return len(events)

    async def _coalesce(self, by_record: dict[int, list[StoredEvent]]) -> list[StoredEvent]:
        """The newest event of each record; the others are marked ``coalesced``."""
        kept: list[StoredEvent] = []
        for events in by_record.values():
            newest = max(
                events, key=lambda e: (e.updated_at is not None, e.updated_at or _EPOCH, e.id)
            )
            kept.append(newest)
            older = [e.id for e in events if e is not newest]
            if older:
                await self.store.finish(older, "coalesced", f"event {newest.id} applied instead")
                self.counts.add("coalesced", len(older))
        return kept

    async def _finish(self, events: list[StoredEvent], outcome: str, reason: str | None) -> None:
        await self.store.finish([e.id for e in events], outcome, reason)
        self.counts.add(outcome, len(events))

    # --- tasks ---------------------------------------------------------------------
    async def _apply_tasks(self, region: str, events: list[StoredEvent]) -> None:
        client = self.api.client(region)
        candidates: list[_Candidate] = []
        gone: list[StoredEvent] = []
        for event in events:
            payload = _task_payload(event)
            if event.event_name == "task-deleted" or self.strict or payload is None:
                record = await client.record(TASKS, event.entity_id)
                if record is None:
                    gone.append(event)
                    continue
                outcome = "applied"
                if event.event_name == "task-deleted":
                    outcome = "kept"
                    log.warning("webhook_delete_not_confirmed", region=region, event_id=event.id,
                                task_id=event.entity_id,
                                detail="GET /task/{id} still answers: deleted_at not set")  # fmt: skip
                candidates.append(_Candidate(event, record, outcome))
            else:
                candidates.append(_Candidate(event, payload))
        if gone:
            await self._mark_deleted(region, gone)
        valid = [c for c in candidates if await self._valid(c)]
        fresh = await self._newer_than_stored(region, valid)
        if not fresh:
            return
        loaded = await self._loader(TASKS, region).load([c.record for c in fresh], orphans="return")
        orphaned = {record_id(record) for record in loaded.orphans}
        for candidate in fresh:
            if candidate.event.entity_id in orphaned:
                property_id = candidate.record.get("home_id")
                await self._finish([candidate.event], "failed",
                                   f"property {property_id} is not stored yet; the next poll "
                                   "stores both")  # fmt: skip
        for outcome in ("applied", "kept"):
            done = [
                c.event for c in fresh if c.outcome == outcome and c.event.entity_id not in orphaned
            ]
            if done:
                await self._finish(done, outcome, None)

    async def _valid(self, candidate: _Candidate) -> bool:
        """The loader's own checks, without writing; a failure is ``rejected``."""
        record, event = candidate.record, candidate.event
        try:
            if record_id(record) != event.entity_id:
                raise RecordRejected(f"task id {record.get('id')!r} is not the event's task_id")
            entity_table(TASKS).reader.values(record, {})
            if record.get("updated_at") is None:
                raise RecordRejected("updated_at is missing")
        except RecordRejected as err:
            await self._finish([event], "rejected", str(err))
            log.warning("webhook_event_rejected", region=event.region, event_id=event.id,
                        task_id=event.entity_id, reason=str(err))  # fmt: skip
            return False
        return True

    async def _newer_than_stored(
        self, region: str, candidates: list[_Candidate]
    ) -> list[_Candidate]:
        """Those whose ``updated_at`` is newer than the stored row's and whose content differs."""
        if not candidates:
            return []
        rows = await self.pool.fetch(
            "SELECT id, updated_at, content_hash, deleted_at IS NOT NULL AS deleted "
            "FROM breezeway.tasks WHERE region_code = $1 AND id = ANY($2::bigint[])",
            region,
            [c.event.entity_id for c in candidates],
        )
        stored = {row["id"]: row for row in rows}
        fresh = []
        for candidate in candidates:
            row = stored.get(candidate.event.entity_id)
            if row is not None:
                updated = to_timestamptz(candidate.record["updated_at"])
                if row["updated_at"] is not None and updated <= row["updated_at"]:
                    if row["deleted"] or content_hash(serialize(candidate.record)[1]) != bytes(
                        row["content_hash"]
                    ):
                        reason = "not newer than the stored row"
                    else:
                        reason = "same as the stored row"
                    if candidate.outcome == "kept":
                        outcome, reason = "kept", "GET /task/{id} still answers: not deleted"
                    else:
                        outcome = "unchanged"
                        if reason == "not newer than the stored row":  # late, or forged
                            log.info("webhook_event_stale", region=region, task_id=row["id"],
                                     event_id=candidate.event.id, reason=reason)  # fmt: skip
                    await self._finish([candidate.event], outcome, reason)
                    continue
            fresh.append(candidate)
        return fresh

    async def _mark_deleted(self, region: str, events: list[StoredEvent]) -> None:
        """Tasks the API answered 404 for: ``deleted_at`` set (no row: nothing to mark)."""
        await self.pool.execute(
            "UPDATE breezeway.tasks SET deleted_at = now() "
            "WHERE region_code = $1 AND id = ANY($2::bigint[]) AND deleted_at IS NULL",
            region,
            [e.entity_id for e in events],
        )
        await self._finish(events, "deleted", "GET /task/{id} answered 404")

    # --- properties ----------------------------------------------------------------
    async def _apply_properties(self, region: str, events: list[StoredEvent]) -> None:
        by_status: dict[str, list[StoredEvent]] = {}
        for event in events:
            status = _property_status(event)
            if status is None:
                await self._finish([event], "rejected", "no status")
                continue
            by_status.setdefault(status, []).append(event)
        client = self.api.client(region)
        endpoint = PROPERTIES.endpoints[0]
        for status, waiting in by_status.items():
            wanted = {e.entity_id: e for e in waiting}
            found: list[dict[str, Any]] = []
            async for page in client.pages(endpoint, {"status": status}):
                found += [r for r in page if isinstance(r, dict) and r.get("id") in wanted]
            if found:
                loaded = await self._loader(PROPERTIES, region).load(found)
                if loaded.records_rejected:
                    log.warning(
                        "webhook_property_rejected", region=region, count=loaded.records_rejected
                    )
            listed = {r["id"] for r in found}
            await self._finish([e for pid, e in wanted.items() if pid in listed], "applied", None)
            await self._finish(
                [e for pid, e in wanted.items() if pid not in listed],
                "unchanged",
                f"not listed with status {status!r} any more; the next poll settles it",
            )


def _task_payload(event: StoredEvent) -> Mapping[str, Any] | None:
    try:
        data = loads(event.body)
    except ValueError:
        return None
    task = data.get("task") if isinstance(data, dict) else None
    return task if isinstance(task, dict) and task.get("updated_at") is not None else None


def _property_status(event: StoredEvent) -> str | None:
    try:
        data = loads(event.body)
    except ValueError:
        return None
    status = data.get("status") if isinstance(data, dict) else None
    return status if isinstance(status, str) and status else None
