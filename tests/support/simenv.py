"""The simulator as tests use it: region settings for its companies, ``SimEnv``, env files.

``env_file_text`` is the one writer of env files for the real ``breezeway-daemon`` process
(CLI commands and ``serve``); ``SimEnv.env_file_text`` and ``daemon_env_file_text`` fill it
in for a simulator and for a daemon whose batches run only when a test signals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breezeway_daemon.config import Settings, load_settings
from breezeway_sim import Simulator, SimulatorServer

NO_ENV_FILE = Path("/nonexistent/bw-test.env")
"""An env file that does not exist: settings come from the arguments alone."""

DAEMON_DEFAULTS: dict[str, object] = {
    "requests_per_minute": 100_000,
    "heartbeat_s": 1,
    "http_timeout_s": 5,
    "http_retry_budget_s": 20,
    # Far from now: batches run when a test asks (SIGUSR1), not by the clock.
    "hourly_cron": "0 0 1 1 *",
    "daily_cron": "0 0 1 1 *",
}


def regions_for(
    sim: Simulator, names: list[str] | None = None, *, secrets: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Region settings for each simulated company (``region_1``... unless named);
    ``secrets`` replaces the client secret of the regions it names."""
    names = names or [f"region_{i + 1}" for i in range(len(sim.companies))]
    secrets = secrets or {}
    return {
        name: {
            "client_id": company.client_id,
            "client_secret": secrets.get(name, company.client_secret),
            "company_id": company.company_id,
        }
        for name, company in zip(names, sim.companies, strict=False)
    }


def settings_for(base: Settings, sim: Simulator, base_url: str, **overrides: object) -> Settings:
    """Settings pointing at a running simulator, with its companies as regions."""
    values: dict[str, object] = {
        "database_url": base.dsn(),
        "state_dir": base.state_dir,
        "api_base_url": base_url,
        "regions": regions_for(sim),
        "requests_per_minute": 100_000,
        "max_in_flight_per_credential": 8,
        "http_timeout_s": 5,
        "http_retry_budget_s": 20,
        "heartbeat_s": 1,
        # A run that hangs fails in minutes, not after the production default hour.
        "max_run_minutes": 3,
    }
    values.update(overrides)
    return load_settings(NO_ENV_FILE, **values)


def env_file_text(
    database_url: str,
    api_base_url: str,
    regions: Mapping[str, Mapping[str, Any]],
    **settings: object,
) -> str:
    """An env file: the database, the API, each region's settings, then ``settings`` as
    ``BREEZEWAY_<NAME>=value`` lines."""
    lines = [f"DATABASE_URL={database_url}", f"BREEZEWAY_API_BASE_URL={api_base_url}"]
    for name, config in regions.items():
        prefix = f"BREEZEWAY_REGIONS__{name.upper()}__"
        lines += [f"{prefix}{key.upper()}={value}" for key, value in config.items()]
    lines += [f"BREEZEWAY_{key.upper()}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def daemon_env_file_text(
    database_url: str,
    api_base_url: str,
    state_dir: Path,
    regions: Mapping[str, Mapping[str, Any]],
    **settings: object,
) -> str:
    """An env file for a daemon: ``settings`` over ``DAEMON_DEFAULTS`` (batches run when a
    test signals, SIGUSR1, never by the clock)."""
    values = {"state_dir": state_dir, **DAEMON_DEFAULTS, **settings}
    return env_file_text(database_url, api_base_url, regions, **values)


def write_private(path: Path, text: str) -> Path:
    """Write an env file readable by its owner only, as the runbook installs it."""
    path.write_text(text)
    path.chmod(0o600)
    return path


@dataclass
class SimEnv:
    """A simulator served over real HTTP on 127.0.0.1, and settings that point at it."""

    sim: Simulator
    server: SimulatorServer
    settings: Settings

    @property
    def regions(self) -> dict[str, int]:
        """Region name -> company id."""
        return {name: config.company_id for name, config in self.settings.regions.items()}  # type: ignore[misc]

    def env_file_text(
        self,
        *,
        database_url: str | None = None,
        secrets: Mapping[str, str] | None = None,
        **settings: object,
    ) -> str:
        """An env file for this simulator and database (or ``database_url``); ``secrets``
        replaces regions' client secrets."""
        s = self.settings
        regions = regions_for(self.sim, secrets=secrets)
        return env_file_text(database_url or s.dsn(), s.api_base_url, regions, **settings)

    def daemon_env_file_text(self, **settings: object) -> str:
        """The daemon's env file for this simulator, with ``settings`` over the defaults."""
        s = self.settings
        return daemon_env_file_text(
            s.dsn(), s.api_base_url, s.state_dir, regions_for(self.sim), **settings
        )
