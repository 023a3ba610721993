"""The details listing (task_details): each task's comments and requirements, by a cheap policy.

Fetched when a task is new or changed, or open and not fetched within the sweep interval;
at most ``details_max_tasks_per_run`` tasks a run, one transaction per chunk, at the pacer's
background priority. The policy and its counts: README, "How it syncs".
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog

from breezeway_daemon.api.errors import NotFound
from breezeway_daemon.config import Settings
from breezeway_daemon.db.children import ChildSets, ChildWriter
from breezeway_daemon.db.runs import RequestMode, RunCounts
from breezeway_daemon.entities import Endpoint
from breezeway_daemon.sync.listings import Listing

if TYPE_CHECKING:
    from breezeway_daemon.sync.run import EntitySync

log = structlog.get_logger(__name__)

CHUNK = 50  # tasks fetched, then written in one transaction

# Due tasks, the new and changed first. $2: finished since (open tasks), $3: swept before.
DUE_TASKS = """
SELECT t.id, t.content_hash, f.task_id IS NULL AS first
FROM breezeway.tasks t
LEFT JOIN breezeway.task_details_fetches f ON f.region_code = t.region_code AND f.task_id = t.id
WHERE t.region_code = $1 AND t.deleted_at IS NULL
  AND (f.task_id IS NULL OR f.task_hash <> t.content_hash
       OR (f.gone_at IS NULL AND f.fetched_at < $3
           AND (t.finished_at IS NULL OR t.finished_at >= $2)))
ORDER BY (f.task_id IS NULL OR f.task_hash <> t.content_hash) DESC, f.fetched_at NULLS FIRST, t.id
LIMIT $4
"""
RECORD_FETCHES = """
INSERT INTO breezeway.task_details_fetches (region_code, task_id, task_hash, fetched_at, gone_at, run_id)
SELECT $1, k.id, k.hash, now(), CASE WHEN k.gone THEN now() END, $5
FROM unnest($2::bigint[], $3::bytea[], $4::boolean[]) AS k(id, hash, gone)
ON CONFLICT (region_code, task_id) DO UPDATE SET task_hash = EXCLUDED.task_hash,
    fetched_at = EXCLUDED.fetched_at, gone_at = EXCLUDED.gone_at, run_id = EXCLUDED.run_id
"""


@dataclass(frozen=True)
class DetailsPolicy:
    """When a task's details are due; from the settings ``details_*``."""

    open_days: float = 7
    sweep_hours: float = 24
    max_tasks_per_run: int = 1500
    concurrency: int = 4

    @classmethod
    def of(cls, settings: Settings) -> DetailsPolicy:
        return cls(
            open_days=settings.details_open_days,
            sweep_hours=settings.details_sweep_hours,
            max_tasks_per_run=settings.details_max_tasks_per_run,
            concurrency=settings.task_fetch_concurrency,
        )


@dataclass
class _Fetched:
    task_id: int
    task_hash: bytes
    first: bool
    answers: list[Any] = field(default_factory=list)  # one per endpoint
    gone: bool = False


class TaskDetails(Listing):
    """Pick the due tasks, fetch their details, replace their child sets, record the fetch.

    The run is not incremental (no cursor: the policy's state is ``task_details_fetches``);
    a ``full`` run sweeps every open task.
    """

    incremental = False

    def __init__(self, run: EntitySync) -> None:
        super().__init__(run)
        self.policy = DetailsPolicy.of(run.ctx.settings)
        self.writer = ChildWriter(self.region, run.lease.run_id)
        self.sweep_all = run.request.mode is RequestMode.FULL

    async def due(self) -> list[asyncpg.Record]:
        """The tasks this run fetches, the new and changed first."""
        now = datetime.now(UTC)
        policy = self.policy
        swept_before = now if self.sweep_all else now - timedelta(hours=policy.sweep_hours)
        return await self.pool.fetch(
            DUE_TASKS,
            self.region,
            now - timedelta(days=policy.open_days),
            swept_before,
            policy.max_tasks_per_run,
        )

    async def list(self, cursor_from: datetime | None) -> None:
        """Fetch and store the details of every due task, ``CHUNK`` tasks a transaction."""
        due = await self.due()
        gate = asyncio.Semaphore(self.policy.concurrency)
        total = RunCounts()
        for start in range(0, len(due), CHUNK):
            rows = due[start : start + CHUNK]
            chunk = [_Fetched(r["id"], r["content_hash"], r["first"]) for r in rows]
            await asyncio.gather(*(self._fetch(one, gate) for one in chunk))
            counts = await self._store(chunk)
            total.add(counts)
            self.run.count(counts)
            self.run.stop_if_requested()
        log.info("task_details_fetched", region=self.region, tasks=total.records_processed,
                 gone=total.records_deleted, rejected=total.items_rejected)  # fmt: skip

    async def _fetch(self, one: _Fetched, gate: asyncio.Semaphore) -> None:
        async with gate:
            try:
                for endpoint in self.spec.endpoints:
                    one.answers.append(await self._get(endpoint, one.task_id))
            except NotFound:
                one.gone = True

    async def _get(self, endpoint: Endpoint, task_id: int) -> Any:
        return await self.client.get(endpoint.path.format(id=task_id), background=True)

    async def _store(self, chunk: list[_Fetched]) -> RunCounts:
        present = [one for one in chunk if not one.gone]
        sets: list[ChildSets] = []
        for index, table in enumerate(self.spec.child_tables):
            answers = {one.task_id: one.answers[index] for one in present}
            sets.append(self.writer.fetched(table, answers))
        async with self.pool.acquire() as conn, conn.transaction():
            rejected = await self.writer.replace(conn, sets)
            await conn.execute(
                RECORD_FETCHES,
                self.region,
                [o.task_id for o in chunk],
                [o.task_hash for o in chunk],
                [o.gone for o in chunk],
                self.writer.run_id,
            )
        new = sum(1 for o in present if o.first)
        return RunCounts(
            records_processed=len(chunk),
            records_new=new,
            records_updated=len(present) - new,
            records_deleted=len(chunk) - len(present),
            items_rejected=rejected,
        )
