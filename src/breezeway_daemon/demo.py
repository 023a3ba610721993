"""``breezeway-daemon demo``: the whole product on one machine, with nothing to set up.

(``run_demo``: database, simulator, full sync, an hour later, status.)
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TextIO

from breezeway_daemon import status
from breezeway_daemon.config import Settings, load_settings, mask_url
from breezeway_daemon.db import schema
from breezeway_daemon.db.children import child_counts
from breezeway_daemon.db.embedded import embedded_postgres
from breezeway_daemon.db.pool import connect
from breezeway_daemon.db.runs import RunCounts
from breezeway_daemon.entities import ENTITY_NAMES
from breezeway_daemon.sync import RunResult, SyncContext, run_batch
from breezeway_sim import Simulator, SimulatorServer

DEMO_DETAILS_PER_RUN = 40
RUNBOOK_REGIONS = (
    "nashville", "austin", "smoky", "hilton_head", "breckenridge", "sea_ranch", "mammoth", "hill_country",
)  # fmt: skip


class Progress:
    """Records and API calls per region and entity, redrawn in place on a terminal."""

    def __init__(self, regions: list[str], out: TextIO) -> None:
        self.regions = regions
        self.out = out
        self.counts: dict[tuple[str, str], tuple[int, int]] = {}
        self.tty = out.isatty()
        self._drawn_lines = 0
        self._last_plain = 0.0
        self._last_line = ""

    def update(self, region: str, entity: str, counts: RunCounts) -> None:
        self.counts[(region, entity)] = (counts.records_processed, counts.api_calls_made)

    def finish(self, results: list[RunResult]) -> None:
        for result in results:
            self.counts[(result.region, result.entity)] = (
                result.counts.records_processed,
                result.counts.api_calls_made,
            )
        self.draw(force=True)

    def draw(self, force: bool = False) -> None:
        if not self.tty:
            now = time.monotonic()
            if force or now - self._last_plain >= 5:
                self._last_plain = now
                records = sum(r for r, _ in self.counts.values())
                calls = sum(c for _, c in self.counts.values())
                line = f"  ... {records} records stored, {calls} API calls"
                if line != self._last_line:  # a pipe or a log gets news only
                    self._last_line = line
                    print(line, file=self.out, flush=True)
            return
        lines = [f"  {'region':<14}" + "".join(f"{e:>18}" for e in ENTITY_NAMES)]
        for region in self.regions:
            cells = []
            for entity in ENTITY_NAMES:
                records, calls = self.counts.get((region, entity), (0, 0))
                cells.append(f"{records:>8} rec {calls:>4} c")
            lines.append(f"  {region:<14}" + "".join(f"{c:>18}" for c in cells))
        if self._drawn_lines:
            self.out.write(f"\x1b[{self._drawn_lines}F")
        self.out.write("\n".join(line + "\x1b[K" for line in lines) + "\n")
        self.out.flush()
        self._drawn_lines = len(lines)


async def _redraw(progress: Progress) -> None:
    while True:
        progress.draw()
        await asyncio.sleep(0.25)


@contextlib.asynccontextmanager
async def database(settings_url: str | None, state_dir: Path) -> AsyncIterator[tuple[str, bool]]:
    """``(url, embedded)``: DATABASE_URL when set, else an embedded server."""
    if settings_url:
        yield settings_url, False
        return
    async with embedded_postgres(state_dir) as url:
        yield url, True


async def sync_with_progress(
    ctx: SyncContext, regions: list[str], mode: str, out: TextIO
) -> list[RunResult]:
    progress = Progress(regions, out)
    ctx.on_progress = progress.update
    drawing = asyncio.create_task(_redraw(progress))
    try:
        results = await run_batch(ctx, regions, ENTITY_NAMES, mode=mode, trigger="demo")
    finally:
        drawing.cancel()
        ctx.on_progress = None
    progress.finish(results)
    return results


def _summary(results: list[RunResult], seconds: float) -> str:
    failed = [r for r in results if r.failed]
    records = sum(r.counts.records_processed for r in results)
    calls = sum(r.counts.api_calls_made for r in results)
    new = sum(r.counts.records_new for r in results)
    updated = sum(r.counts.records_updated for r in results)
    deleted = sum(r.counts.records_deleted for r in results)
    text = (
        f"  {len(results)} runs in {seconds:.1f} s: {records} records received ({new} new, "
        f"{updated} updated, {deleted} deleted), {calls} API calls, {len(failed)} failed"
    )
    for result in failed:
        text += f"\n  FAILED {result.region}/{result.entity}: {result.error}"
    return text


async def run_demo(
    *,
    database_url: str | None,
    state_dir: Path,
    scale: str = "demo",
    keep_running: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """Run the demo end to end; returns the exit code (1 if any run failed).

    1. A database: ``DATABASE_URL`` when set, else an embedded PostgreSQL kept in ``<state
       dir>/pgdata`` (listening on a Unix socket only).
    2. The built-in Breezeway simulator on 127.0.0.1, one company per runbook region.
    3. Migrations, then a full sync of every entity of every region with a live progress display
       (records and API calls per region and entity).
    4. The simulated clock moves on an hour (records created, changed, deleted) and an incremental
       sync runs.
    5. The status table, and how to connect with psql; then a clean stop (or, with
       ``--keep-running``, everything stays up until Ctrl-C).
    """
    regions = list(RUNBOOK_REGIONS)
    say = lambda text="": print(text, file=out, flush=True)  # noqa: E731
    say(f"breezeway-daemon demo: {len(regions)} regions against the built-in Breezeway simulator")
    started = time.monotonic()
    await asyncio.to_thread(state_dir.mkdir, parents=True, exist_ok=True)
    async with database(database_url, state_dir) as (url, embedded):
        where = f"embedded PostgreSQL in {state_dir / 'pgdata'}" if embedded else "DATABASE_URL"
        say(f"1. database: {where}")
        sim = Simulator(companies=len(regions), scale=scale, seed=2026)
        async with SimulatorServer(sim, port=0) as server:
            say(f"2. simulator: {server.base_url} ({len(regions)} companies, fake credentials)")
            settings = demo_settings(url, server.base_url, sim, regions, state_dir)
            conn = await connect(settings, application_name="breezeway-daemon demo")
            try:
                applied = await schema.migrate(conn)
            finally:
                await conn.close()
            say(
                f"3. migrations: {len(applied)} applied"
                if applied
                else "3. migrations: schema up to date"
            )
            async with SyncContext.open(settings, application_name="breezeway-daemon demo") as ctx:
                say("4. full sync of every entity of every region:")
                t0 = time.monotonic()
                first = await sync_with_progress(ctx, regions, "full", out)
                say(_summary(first, time.monotonic() - t0))

                changes = sim.advance(hours=1)
                changed = sum(sum(e.values()) for c in changes.values() for e in c.values())
                say(
                    f"5. the simulated clock moved on an hour: {changed} records created, changed or deleted"
                )
                say("   incremental sync:")
                t0 = time.monotonic()
                second = await sync_with_progress(ctx, regions, "incremental", out)
                say(_summary(second, time.monotonic() - t0))

                say("6. status (breezeway-daemon status):")
                say(status.render(await status.collect(ctx.pool, settings)))
                rows = await child_counts(ctx.pool)
                say("   child tables (rows): " + ", ".join(f"{t} {n}" for t, n in rows.items()))
            say()
            say("   connect with psql:")
            # DATABASE_URL may hold a password: never print it (the embedded one has none).
            say(f"     psql '{url if embedded else mask_url(url)}'")
            say("     SELECT region_code, count(*) FROM breezeway.tasks GROUP BY 1;")
            if keep_running:
                say("   everything stays up until Ctrl-C ...")
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.Event().wait()
            elif embedded:
                say(
                    "   (the embedded server stops now; `breezeway-daemon demo --keep-running` keeps it up)"
                )
        say(f"7. stopped cleanly after {time.monotonic() - started:.0f} s")
    failed = any(r.failed for r in first + second)
    return 1 if failed else 0


def demo_settings(
    url: str, base_url: str, sim: Simulator, regions: list[str], state_dir: Path
) -> Settings:
    return load_settings(
        Path("/nonexistent/breezeway-demo.env"),
        database_url=url,
        api_base_url=base_url,
        state_dir=state_dir,
        regions={
            name: {
                "client_id": company.client_id,
                "client_secret": company.client_secret,
                "company_id": company.company_id,
            }
            for name, company in zip(regions, sim.companies, strict=True)
        },
        region_concurrency=8,
        # Task details cost two calls a task; at the API's real pace (which the demo keeps)
        # fetching all 960 tasks' details of a region would take 13 minutes. The demo
        # fetches 40 a region and run (production: BREEZEWAY_DETAILS_MAX_TASKS_PER_RUN).
        details_max_tasks_per_run=DEMO_DETAILS_PER_RUN,
    )
