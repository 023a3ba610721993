"""A batch of runs: every region's pipeline, a few regions at once.

A region's pipeline runs its chain of dependants in order (properties, then
reservations, then tasks: the specs' ``parents``) and the independent entities
(people, supplies, tags) beside it. A failed parent stops its dependants in that
region, recorded as failed "skipped: properties failed".
"""

from __future__ import annotations

import asyncio

import structlog

from breezeway_daemon import metrics
from breezeway_daemon.db import runs
from breezeway_daemon.db.runs import RequestMode, RunStatus
from breezeway_daemon.entities import ENTITIES, in_a_chain, in_dependency_order
from breezeway_daemon.errors import ErrorKind, describe
from breezeway_daemon.sync.context import RunResult, SyncContext, SyncRequest
from breezeway_daemon.sync.run import EntitySync

log = structlog.get_logger(__name__)


class RegionPipeline:
    """A region's runs: the chain of dependants in order, the independent entities beside it."""

    def __init__(self, ctx: SyncContext, region: str, entities: list[str] | tuple[str, ...], *,
                 mode: RequestMode = RequestMode.INCREMENTAL, trigger: str = "manual") -> None:  # fmt: skip
        self.ctx = ctx
        self.region = region
        self.entities = in_dependency_order(list(entities))
        self.mode = RequestMode(mode)
        self.trigger = trigger

    async def run(self) -> list[RunResult]:
        chain = [name for name in self.entities if in_a_chain(name)]
        side = [name for name in self.entities if name not in chain]
        chain_results, side_results = await asyncio.gather(
            self._in_order(chain), self._in_order(side)
        )
        order = {name: index for index, name in enumerate(self.entities)}
        return sorted(chain_results + side_results, key=lambda result: order[result.entity])

    async def _in_order(self, names: list[str]) -> list[RunResult]:
        results: list[RunResult] = []
        failed: set[str] = set()
        for name in names:
            broken = [parent for parent in ENTITIES[name].parents if parent in failed]
            if broken:
                reason = f"skipped: {broken[0]} failed"
                run_id = await self._record_skipped(name, reason)
                log.warning(
                    "run_not_started", region=self.region, entity=name, reason=reason, run_id=run_id
                )
                results.append(RunResult(self.region, name, RunStatus.FAILED, run_id, error=reason,
                                         error_kind=ErrorKind.OTHER, mode=self.mode))  # fmt: skip
                metrics.run_finished(results[-1])
                failed.add(name)
                continue
            result = await EntitySync(
                self.ctx, SyncRequest(self.region, name, self.mode, self.trigger)
            ).run()
            results.append(result)
            if result.failed:
                failed.add(name)
        return results

    async def _record_skipped(self, name: str, reason: str) -> int | None:
        """The skipped run's row, or None when the database cannot take it (an outage
        fails the parent first): the batch goes on and reports it either way."""
        try:
            async with asyncio.timeout(30):
                return await runs.record_skipped_run(
                    self.ctx.pool, self.region, name, trigger=self.trigger, reason=reason
                )
        except Exception as err:  # noqa: BLE001 - one region's bookkeeping never stops a batch
            log.error("run_not_recorded", region=self.region, entity=name, error=describe(err))
            return None


async def run_batch(
    ctx: SyncContext,
    regions: list[str],
    entities: list[str] | tuple[str, ...],
    *,
    mode: RequestMode = RequestMode.INCREMENTAL,
    trigger: str = "manual",
) -> list[RunResult]:
    """Every region's pipeline, at most ``region_concurrency`` at once."""
    limit = asyncio.Semaphore(ctx.settings.region_concurrency)

    async def one(region: str) -> list[RunResult]:
        async with limit:
            return await RegionPipeline(ctx, region, entities, mode=mode, trigger=trigger).run()

    per_region = await asyncio.gather(*(one(region) for region in regions))
    return [result for results in per_region for result in results]
