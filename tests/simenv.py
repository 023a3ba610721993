"""The simulator as tests use it: region settings for its companies, and SimEnv.

A plain module (not a conftest) so that test files anywhere can import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from breezeway_daemon.config import Settings, load_settings
from breezeway_sim import Simulator, SimulatorServer


def regions_for(sim: Simulator, names: list[str] | None = None) -> dict[str, dict[str, object]]:
    """Region settings for each simulated company (``region_1``... unless named)."""
    names = names or [f"region_{i + 1}" for i in range(len(sim.companies))]
    return {
        name: {
            "client_id": company.client_id,
            "client_secret": company.client_secret,
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
    return load_settings(Path("/nonexistent/bw-test.env"), **values)


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
    sim_env: SimEnv,
    *,
    database_url: str | None = None,
    secrets: dict[str, str] | None = None,
    **settings: object,
) -> str:
    """An env file for ``sim_env``: the database, the API, its regions, then ``settings``
    as ``BREEZEWAY_<NAME>=value`` lines. ``secrets`` replaces regions' client secrets."""
    s = sim_env.settings
    lines = [f"DATABASE_URL={database_url or s.dsn()}", f"BREEZEWAY_API_BASE_URL={s.api_base_url}"]
    for name, config in regions_for(sim_env.sim).items():
        prefix = f"BREEZEWAY_REGIONS__{name.upper()}__"
        secret = (secrets or {}).get(name, config["client_secret"])
        lines += [
            f"{prefix}CLIENT_ID={config['client_id']}",
            f"{prefix}CLIENT_SECRET={secret}",
            f"{prefix}COMPANY_ID={config['company_id']}",
        ]
    lines += [f"BREEZEWAY_{key.upper()}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"
