"""Opaque tokens echoed by the API: masked by value everywhere the daemon writes.

The simulator issues opaque tokens (not JWT-shaped, so no pattern can know them) and
answers 422 to supplies listings and to refreshes with a body that quotes the caller's
token. Neither the access token nor the refresh token may reach a log line, an alert,
``api_tokens.last_error``, ``etl_sync_log.error_message`` or a bundle.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from breezeway_daemon.config import Settings
from breezeway_sim import Scale, Simulator, SimulatorServer

from support.cli import run_cli
from support.leaks import bundle_files, database_outputs, find_leaks
from support.recorder import record_issued_tokens
from support.simenv import daemon_env_file_text, regions_for, write_private

SCALE = Scale(properties=4, reservations_per_property=2, tasks_per_property=2, people=3,
              supplies=3, tags=2)  # fmt: skip


@pytest.mark.timeout(120)
async def test_an_opaque_token_echoed_in_a_4xx_body_is_masked_everywhere(
    clean_db: asyncpg.Pool, base_settings: Settings, tmp_path: Path
) -> None:
    pool = clean_db
    sim = Simulator(companies=1, scale=SCALE, seed=7)
    sim.tokens.opaque = True
    sim.faults.auth_rate_limit_per_minute = None
    sim.faults.echo_token_paths = {"/supplies", "/refresh"}
    issued = record_issued_tokens(sim)
    async with SimulatorServer(sim, port=0) as server:
        env_file = write_private(tmp_path / "breezeway.env", daemon_env_file_text(
            base_settings.dsn(), server.base_url, tmp_path, regions_for(sim),
            hourly_entities="properties,supplies", http_max_attempts=2, alert_quiet_hours=0,
        ))  # fmt: skip
        outputs: dict[str, str] = {}
        # A login, then a supplies listing answered 422 with the access token in it.
        first = await run_cli("run", "all", env_file=env_file)
        # The stored access token expires: its renewal by refresh is answered 422 with the
        # refresh token in it.
        await pool.execute("UPDATE breezeway.api_tokens SET token_expires_at = now()")
        second = await run_cli("run", "all", env_file=env_file)
        bundle = await run_cli("bundle", "--out", str(tmp_path / "b.tar.gz"), env_file=env_file)
        for n, result in enumerate((first, second, bundle)):
            outputs[f"command {n} stdout"] = result.stdout
            outputs[f"command {n} stderr"] = result.stderr
        assert bundle.code == 0, bundle
        outputs.update(bundle_files(tmp_path / "b.tar.gz"))
    outputs["alerts.log"] = (tmp_path / "alerts.log").read_text()
    outputs.update(await database_outputs(pool))

    # The echoes happened where they could leak.
    assert first.code == 1 and second.code == 1, (first, second)
    assert len(issued) == 2 and not any("." in token for token in issued)
    assert "422" in outputs["etl_sync_log"] and "422" in outputs["api_tokens.last_error"]
    assert "422" in outputs["alerts.log"]
    tokens = {f"token #{i} ({'access' if i % 2 == 0 else 'refresh'})": t
              for i, t in enumerate(issued)}  # fmt: skip
    assert find_leaks(outputs, tokens) == []
