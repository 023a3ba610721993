"""The reliability suite's environment: a simulator big enough for many batches, settings
that fail fast, and ``RelEnv``, a ``SyncEnv`` whose alerts go to the test's own alerts.log.

Its SyncContext's pool connections carry the application name ``REL_APP``, so that a test
can find (and terminate) exactly the connections of the sync under test.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breezeway_daemon.alerts import Alerts, LoggedAlert
from breezeway_daemon.config import Settings
from breezeway_sim import EntityRates, Rates, Scale, Simulator

from support import syncenv
from support.alerts import logged
from support.syncenv import SyncEnv

REL_APP = "bw-reliability"
"""The application_name of the pool of the SyncContext under test."""
LOCK_APP = "breezeway-daemon run"
"""The application_name of a run's own connection (the one holding its advisory lock)."""

SCALE = Scale(properties=10, reservations_per_property=5, tasks_per_property=12, people=15,
              supplies=12, tags=4)  # fmt: skip

# Hourly batches are incremental: they see creations and changes, while deletions of
# reservations and tasks (and of properties, which take theirs along) wait for the daily
# full refresh. With these rates one hourly batch must reach the truth exactly.
HOURLY_SAFE_RATES = Rates(
    properties=EntityRates(0.1, 0.3, 0.0),
    reservations=EntityRates(0.2, 0.3, 0.0),
    tasks=EntityRates(0.2, 0.3, 0.0),
    people=EntityRates(0.1, 0.2, 0.05),
    supplies=EntityRates(0.1, 0.2, 0.05),
    tags=EntityRates(0.1, 0.1, 0.05),
)

# A failing request gives up after three quick attempts; small batches make many transactions.
FAST = {
    "http_max_attempts": 3,
    "http_retry_budget_s": 5,
    "batch_size": 10,
    "heartbeat_s": 0.2,
}


@dataclass
class RelEnv(SyncEnv):
    """A ``SyncEnv`` and its alerts."""

    alerts: Alerts

    def alerts_log(self) -> list[LoggedAlert]:
        return logged(self.settings)


@contextlib.asynccontextmanager
async def served(
    base: Settings, sim: Simulator, state_dir: Path, **overrides: Any
) -> AsyncIterator[RelEnv]:
    """``sim`` served with ``FAST`` settings (``overrides`` over them), state in ``state_dir``."""
    async with syncenv.served(
        base, sim, application_name=REL_APP, state_dir=state_dir, **{**FAST, **overrides}
    ) as env:
        yield RelEnv(env.sim, env.server, env.settings, env.ctx, Alerts(env.settings, env.pool))
