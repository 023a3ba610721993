"""The daemon's schedule: its cron jobs on APScheduler 3 and their triggers from settings.

Jobs coalesce, never overlap themselves, and have a misfire grace time; a reload
reschedules them in place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from breezeway_daemon.config import Settings

# The batches, by job id, as alerts and status name them.
BATCH_JOBS = {"hourly": "Hourly ETL", "daily": "Daily ETL"}

Job = tuple[Callable[..., Any], tuple[Any, ...]]


def triggers(settings: Settings) -> dict[str, CronTrigger]:
    """Each job's cron trigger, in the configured timezone."""
    crons = {
        "hourly": settings.hourly_cron,
        "daily": settings.daily_cron,
        "watchdog": settings.watchdog_cron,
        "retention": settings.retention_cron,
    }
    return {
        job: CronTrigger.from_crontab(cron, timezone=settings.timezone)
        for job, cron in crons.items()
    }


class Schedule:
    """The running scheduler of a daemon: ``jobs`` maps each job id of ``triggers`` to
    the coroutine function it calls and its arguments."""

    def __init__(self, settings: Settings, jobs: Mapping[str, Job]) -> None:
        self.scheduler = AsyncIOScheduler(
            timezone=settings.timezone,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": settings.misfire_grace_s},
        )  # fmt: skip
        for job_id, trigger in triggers(settings).items():
            func, args = jobs[job_id]
            self.scheduler.add_job(
                func, trigger, args=args, id=job_id, name=job_id, replace_existing=True
            )
        self.scheduler.start()

    @property
    def running(self) -> bool:
        return bool(self.scheduler.running)

    def reschedule(self, settings: Settings) -> None:
        """New triggers (after a reload), jobs kept."""
        for job_id, trigger in triggers(settings).items():
            self.scheduler.reschedule_job(job_id, trigger=trigger)

    def next_batches(self) -> dict[str, str]:
        """When each batch job runs next, in UTC."""
        return {
            job.id: job.next_run_time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            for job in self.scheduler.get_jobs()
            if job.next_run_time is not None and job.id in BATCH_JOBS
        }

    def stop(self) -> None:
        self.scheduler.shutdown(wait=False)
