"""The task_details entity: each task's comments and requirements, fetched by a cheap policy.

There is no listing of comments or requirements across tasks: one call per task and kind
(``GET /task/{id}/comments``, ``/requirements``). Fetching every task every day (the replaced
system: about 281,000 calls a day) is neither needed nor affordable. A task's details are
fetched when

1. the task is new, or its content changed since its details were last fetched (its
   ``content_hash`` differs from the one recorded in ``task_details_fetches``): answering
   requirements changes the task, so this catches every requirements change;
2. it is open (not finished, or finished within ``details_open_days``, default 7) and its
   details are older than ``details_sweep_hours`` (default 24): a comment does not move the
   task's ``updated_at``, so open tasks are swept daily. Each run sweeps the open tasks whose
   turn has come, so the daily sweep is spread over the hourly runs instead of one burst;
   a ``full`` run sweeps every open task at once.

Old finished tasks are therefore fetched once (or again when they change) and then left
alone. A run fetches at most ``details_max_tasks_per_run`` tasks (new and changed first): a
first sync's backlog spreads over several runs, each well within the run time limit.

Each chunk of tasks is written in one transaction: the children of every task of the chunk
are replaced as sets (``db.children``) and their fetch recorded, so a run killed midway
leaves whole tasks or nothing, and the next run fetches what is missing. A task whose
details answer 404 was deleted: its stored details stay (history) and the fetch records
``gone_at``; it is not swept again unless its content changes.

The calls go through the credential's one pacer at background priority (see
``api.pacing``): they never hold a place that a listing is waiting for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog

from breezeway_daemon.api.errors import NotFound
from breezeway_daemon.db.children import ChildWriter

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
    def of(cls, settings: Any) -> DetailsPolicy:
        return cls(
            open_days=settings.details_open_days,
            sweep_hours=settings.details_sweep_hours,
            max_tasks_per_run=settings.details_max_tasks_per_run,
            concurrency=settings.task_fetch_concurrency,
        )


@dataclass
class DetailsCounts:
    """What a run did: tasks fetched the first time, again, found gone; items rejected."""

    processed: int = 0
    new: int = 0
    updated: int = 0
    deleted: int = 0
    rejected: int = 0


@dataclass
class _Fetched:
    task_id: int
    task_hash: bytes
    first: bool
    comments: Any = None
    requirements: Any = None
    gone: bool = False


class TaskDetailsSync:
    """One run of task_details for one region: pick the due tasks, fetch, replace, record."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        client: Any,
        region: str,
        run_id: int | None,
        policy: DetailsPolicy,
        *,
        on_chunk: Callable[[DetailsCounts], None] | None = None,
    ) -> None:
        self.pool = pool
        self.client = client
        self.region = region
        self.run_id = run_id
        self.policy = policy
        self.on_chunk = on_chunk
        self.writer = ChildWriter(region, run_id)

    async def due(self, *, sweep_all: bool = False) -> list[asyncpg.Record]:
        """The tasks this run fetches, the new and changed first."""
        now = datetime.now(UTC)
        policy = self.policy
        swept_before = now if sweep_all else now - timedelta(hours=policy.sweep_hours)
        return await self.pool.fetch(
            DUE_TASKS,
            self.region,
            now - timedelta(days=policy.open_days),
            swept_before,
            policy.max_tasks_per_run,
        )

    async def run(self, *, sweep_all: bool = False) -> DetailsCounts:
        """Fetch and store the details of every due task; returns the run's counts."""
        due = await self.due(sweep_all=sweep_all)
        total = DetailsCounts()
        gate = asyncio.Semaphore(self.policy.concurrency)
        for start in range(0, len(due), CHUNK):
            chunk = [
                _Fetched(r["id"], r["content_hash"], r["first"]) for r in due[start : start + CHUNK]
            ]
            await asyncio.gather(*(self._fetch(one, gate) for one in chunk))
            counts = await self._store(chunk)
            for name in ("processed", "new", "updated", "deleted", "rejected"):
                setattr(total, name, getattr(total, name) + getattr(counts, name))
            if self.on_chunk is not None:
                self.on_chunk(counts)
        log.info("task_details_fetched", region=self.region, tasks=total.processed,
                 gone=total.deleted, rejected=total.rejected)  # fmt: skip
        return total

    async def _fetch(self, one: _Fetched, gate: asyncio.Semaphore) -> None:
        async with gate:
            try:
                one.comments = await self.client.get(
                    f"/task/{one.task_id}/comments", background=True
                )
                one.requirements = await self.client.get(
                    f"/task/{one.task_id}/requirements", background=True
                )
            except NotFound:
                one.gone = True

    async def _store(self, chunk: list[_Fetched]) -> DetailsCounts:
        counts = DetailsCounts(processed=len(chunk))
        present = [one for one in chunk if not one.gone]
        sets = [
            self.writer.fetched("task_comments", {o.task_id: o.comments for o in present}),
            self.writer.fetched("task_requirements", {o.task_id: o.requirements for o in present}),
        ]
        async with self.pool.acquire() as conn, conn.transaction():
            counts.rejected = await self.writer.replace(conn, sets)
            await conn.execute(
                RECORD_FETCHES,
                self.region,
                [o.task_id for o in chunk],
                [o.task_hash for o in chunk],
                [o.gone for o in chunk],
                self.run_id,
            )
        counts.deleted = len(chunk) - len(present)
        counts.new = sum(1 for o in present if o.first)
        counts.updated = len(present) - counts.new
        return counts
