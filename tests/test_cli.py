"""The operator's commands as operators run them: the real ``breezeway-daemon`` process.

Each command runs as a subprocess with a clean environment and ``BREEZEWAY_ENV_FILE``
pointing at an env file for the simulator (served by this test's event loop, so the
subprocess is awaited, never waited for with a blocking call) and the session database.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import tarfile
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from breezeway_daemon.config import Settings
from breezeway_daemon.entities import ENTITY_NAMES
from breezeway_daemon.sync import SyncContext, run_batch

from support.cli import CliResult, run_cli
from support.database import with_password
from support.groundtruth import differences
from support.simenv import SimEnv, regions_for, write_private

CLI_DEFAULTS: dict[str, object] = {
    "requests_per_minute": 100000,
    "max_in_flight_per_credential": 8,
    "http_timeout_s": 5,
    "http_max_attempts": 2,
    "http_retry_budget_s": 3,
    "heartbeat_s": 1,
}


@dataclass
class Cli:
    """The command line for ``sim_env``: ``await cli("run", "all")``."""

    sim_env: SimEnv
    dir: Path
    env_file: Path

    @property
    def state_dir(self) -> Path:
        return self.dir / "state"

    def configure(self, **kwargs: Any) -> None:
        """The env file: ``kwargs`` (settings, ``database_url``, ``secrets``) over the defaults."""
        text = self.sim_env.env_file_text(**{"state_dir": self.state_dir, **CLI_DEFAULTS, **kwargs})
        write_private(self.env_file, text)

    async def __call__(self, *args: str) -> CliResult:
        return await run_cli(*args, env_file=self.env_file, home=self.dir)


@pytest.fixture
def cli(sim_env: SimEnv, tmp_path: Path) -> Cli:
    found = Cli(sim_env, tmp_path, tmp_path / "breezeway.env")
    found.configure()
    return found


def table_rows(stdout: str) -> dict[tuple[str, str], list[str]]:
    """The run table's rows: (region, entity) -> its columns."""
    rows = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].startswith("region_") and parts[1] in ENTITY_NAMES:
            rows[(parts[0], parts[1])] = parts
    return rows


async def statuses(pool: asyncpg.Pool) -> dict[tuple[str, str], list[str]]:
    rows = await pool.fetch(
        "SELECT region_code, entity_type, sync_status FROM breezeway.etl_sync_log ORDER BY id"
    )
    found: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        found.setdefault((row["region_code"], row["entity_type"]), []).append(row["sync_status"])
    return found


# --- run -------------------------------------------------------------------------------
async def test_run_all_syncs_every_pair_prints_the_table_and_exits_0(
    cli: Cli, sim_env: SimEnv, clean_db: asyncpg.Pool
) -> None:
    result = await cli("run", "all")
    assert result.code == 0, result.stderr
    header = result.stdout.splitlines()[0].split()
    assert header[:4] == ["region", "entity", "status", "records"]
    rows = table_rows(result.stdout)
    assert set(rows) == {(r, e) for r in sim_env.regions for e in ENTITY_NAMES}
    assert {cols[2] for cols in rows.values()} == {"success"}
    assert await differences(clean_db, sim_env.sim, sim_env.regions) == []
    assert set(map(tuple, (await statuses(clean_db)).values())) == {("success",)}


async def test_run_one_region_and_entity_runs_only_that_pair(
    cli: Cli, clean_db: asyncpg.Pool
) -> None:
    result = await cli("run", "region_1", "properties")
    assert result.code == 0, result.stderr
    assert set(table_rows(result.stdout)) == {("region_1", "properties")}
    assert await statuses(clean_db) == {("region_1", "properties"): ["success"]}


WRONG_ARGUMENTS = {
    "region": (["run", "nowhere"], "nowhere"),
    "entity": (["run", "region_1", "bookings"], "bookings"),
    "resync-entity": (["resync", "region_1", "properties", "--since", "2024-01-01"], "properties"),
    "resync-date": (["resync", "region_1", "tasks", "--since", "yesterday"], "yesterday"),
    "resync-window": (
        ["resync", "region_1", "tasks", "--since", "2024-02-01", "--until", "2024-01-01"],
        "--until",
    ),  # fmt: skip
    "token-region": (["token", "nowhere"], "nowhere"),
    "purge-age": (["purge", "--older-than", "7x"], "7x"),
    "command": (["frobnicate"], "frobnicate"),
}


async def test_a_wrong_argument_exits_2_with_one_line_naming_it(
    tmp_path: Path, base_settings: Settings, pool: asyncpg.Pool
) -> None:
    env_file = tmp_path / "breezeway.env"
    env_file.write_text(
        f"DATABASE_URL={base_settings.dsn()}\n"
        "BREEZEWAY_API_BASE_URL=http://127.0.0.1:9\n"
        f"BREEZEWAY_STATE_DIR={tmp_path}\n"
        "BREEZEWAY_REGIONS__REGION_1__CLIENT_ID=id\n"
        "BREEZEWAY_REGIONS__REGION_1__CLIENT_SECRET=secret-1\n"
    )
    runs_before = await pool.fetchval("SELECT count(*) FROM breezeway.etl_sync_log")
    # Concurrently: each is a whole interpreter start, and none touches shared state.
    results = await asyncio.gather(
        *(run_cli(*args, env_file=env_file, home=tmp_path) for args, _ in WRONG_ARGUMENTS.values())
    )
    problems = []
    for (case, (args, named)), result in zip(WRONG_ARGUMENTS.items(), results, strict=True):
        if (
            result.code != 2
            or len(result.stderr_lines) != 1
            or named not in result.stderr
            or not result.stderr.startswith("breezeway-daemon")
        ):
            problems.append(f"{case} {args}: exit {result.code}, stderr {result.stderr!r}")
    assert problems == []
    assert await pool.fetchval("SELECT count(*) FROM breezeway.etl_sync_log") == runs_before


async def test_run_exits_1_when_a_run_failed_and_says_which(
    cli: Cli, sim_env: SimEnv, clean_db: asyncpg.Pool
) -> None:
    company = sim_env.regions["region_1"]
    broken = min(sim_env.sim.truth(company, "properties"))
    sim_env.sim.faults.fail_property_tasks = {broken}
    result = await cli("run", "region_1", "properties", "tasks")
    assert result.code == 1
    rows = table_rows(result.stdout)
    assert rows[("region_1", "properties")][2] == "success"
    assert rows[("region_1", "tasks")][2] == "failed"
    assert "region_1/tasks" in result.last_stderr_line, result.stderr
    assert not result.last_stderr_line.startswith("{")  # a sentence, not a log event
    assert (await statuses(clean_db))[("region_1", "tasks")] == ["failed"]


async def test_resync_refetches_a_date_window(
    cli: Cli, sim_env: SimEnv, clean_db: asyncpg.Pool
) -> None:
    assert (await cli("run", "region_1", "properties", "tasks")).code == 0
    await clean_db.execute("DELETE FROM breezeway.tasks WHERE region_code = 'region_1'")
    since = (date.today() - timedelta(days=3650)).isoformat()
    until = (date.today() + timedelta(days=3650)).isoformat()
    result = await cli("resync", "region_1", "tasks", "--since", since, "--until", until)
    assert result.code == 0, result.stderr
    assert table_rows(result.stdout)[("region_1", "tasks")][2] == "success"
    mode = await clean_db.fetchval(
        "SELECT sync_mode FROM breezeway.etl_sync_log WHERE entity_type = 'tasks' "
        "ORDER BY id DESC LIMIT 1"
    )
    assert mode == "resync"
    assert await clean_db.fetchval(
        "SELECT count(*) FROM breezeway.tasks WHERE region_code = 'region_1'"
    ) > 0  # fmt: skip


# --- token -----------------------------------------------------------------------------
async def test_token_shows_state_never_the_token(cli: Cli, clean_db: asyncpg.Pool) -> None:
    result = await cli("token", "all")
    assert result.code == 0, result.stderr
    assert {line.split()[0] for line in result.stdout.splitlines()[1:]} == {"region_1", "region_2"}
    tokens = await clean_db.fetch("SELECT access_token, refresh_token FROM breezeway.api_tokens")
    values = [v for row in tokens for v in row.values() if v]
    assert len(values) == 4  # an access and a refresh token per region
    output = result.stdout + result.stderr
    for value in values:
        assert value not in output
    for name, config in regions_for(cli.sim_env.sim).items():
        assert str(config["client_secret"]) not in output, name


async def test_token_with_a_wrong_secret_exits_1(cli: Cli, clean_db: asyncpg.Pool) -> None:
    cli.configure(secrets={"region_1": "definitely-the-wrong-secret"})
    result = await cli("token", "region_1")
    assert result.code == 1
    line = next(line for line in result.stdout.splitlines() if line.startswith("region_1"))
    assert line.split()[1] == "no"
    assert "region_1" in result.last_stderr_line and not result.last_stderr_line.startswith("{")
    assert "definitely-the-wrong-secret" not in result.stdout + result.stderr


# --- status ----------------------------------------------------------------------------
async def test_status_exit_codes_and_json(
    cli: Cli, sim_env: SimEnv, sync_ctx: SyncContext, clean_db: asyncpg.Pool
) -> None:
    never = await cli("status")
    assert never.code == 1  # nothing ever succeeded
    assert (
        f"{2 * len(ENTITY_NAMES)} of {2 * len(ENTITY_NAMES)} pairs unhealthy"
        in never.last_stderr_line
    )

    results = await run_batch(sync_ctx, list(sim_env.regions), ENTITY_NAMES)
    assert {r.status for r in results} == {"success"}
    healthy = await cli("status")
    assert healthy.code == 0, healthy.stdout + healthy.stderr
    assert f"{2 * len(ENTITY_NAMES)} pairs, 0 unhealthy" in healthy.stdout

    as_json = await cli("status", "--json")
    assert as_json.code == 0
    pairs = json.loads(as_json.stdout)
    assert len(pairs) == 2 * len(ENTITY_NAMES)
    assert {(p["region"], p["entity"]) for p in pairs} == {
        (r, e) for r in sim_env.regions for e in ENTITY_NAMES
    }
    expected_keys = {"region", "entity", "schedule", "last_status", "last_started_at",
                     "last_success_at", "hours_since_success", "allowed_lag_hours", "failures_24h",
                     "records", "last_error", "healthy"}  # fmt: skip
    for pair in pairs:
        assert expected_keys <= set(pair)
        assert pair["healthy"] is True and pair["last_status"] == "success"
        assert pair["allowed_lag_hours"] == (2 if pair["schedule"] == "hourly" else 25)
    by_pair = {(p["region"], p["entity"]): p for p in pairs}
    truth = len(sim_env.sim.truth(sim_env.regions["region_1"], "properties"))
    assert by_pair[("region_1", "properties")]["records"] == truth

    # Three hours since the last success: stale for properties (hourly: 2 hours allowed),
    # fine for people (daily: 25 hours allowed).
    await clean_db.execute(
        "UPDATE breezeway.etl_sync_log SET last_successful_sync_at = now() - interval '3 hours', "
        "sync_started_at = now() - interval '3 hours 1 minute' "
        "WHERE region_code = 'region_1' AND entity_type IN ('properties', 'people')"
    )
    stale = await cli("status", "--json")
    assert stale.code == 1
    unhealthy = [(p["region"], p["entity"]) for p in json.loads(stale.stdout) if not p["healthy"]]
    assert unhealthy == [("region_1", "properties")]
    assert "region_1/properties" in stale.last_stderr_line
    await clean_db.execute(
        "UPDATE breezeway.etl_sync_log SET last_successful_sync_at = now() "
        "WHERE region_code = 'region_1' AND entity_type = 'properties'"
    )

    # Failed: the latest run of a pair failed, although it succeeded within its lag.
    await clean_db.execute(
        "INSERT INTO breezeway.etl_sync_log (region_code, entity_type, sync_status, "
        "sync_completed_at, last_successful_sync_at, error_message) "
        "VALUES ('region_2', 'tags', 'failed', now(), now() - interval '1 hour', 'HTTP 500 boom')"
    )
    failed = await cli("status")
    assert failed.code == 1
    line = next(
        line for line in failed.stdout.splitlines() if line.split()[:2] == ["region_2", "tags"]
    )
    assert "UNHEALTHY" in line and "HTTP 500 boom" in line
    assert f"{2 * len(ENTITY_NAMES)} pairs, 1 unhealthy" in failed.stdout


# --- bundle ----------------------------------------------------------------------------
BUNDLE_FILES = {"sync_log_24h.csv", "rejected_24h.csv", "alerts.log", "journal.txt", "config.json",
                "versions.txt", "status.txt", "status.json"}  # fmt: skip


async def test_bundle_holds_everything_and_no_secret(
    cli: Cli, sim_env: SimEnv, clean_db: asyncpg.Pool
) -> None:
    db_password = "Db-Pass-7f3c9a"
    smtp_password = "Smtp-Pass-51be0d"
    webhook_secret = "fake-webhook-secret-for-tests-0123456789"
    alerts_log = cli.dir / "alerts.log"
    cli.configure(
        database_url=with_password(sim_env.settings.dsn(), db_password),
        smtp_host="127.0.0.1",
        smtp_port="9",
        smtp_username="alerts",
        smtp_password=smtp_password,
        alert_to="ops@example.com",
        alerts_log=alerts_log,
        webhook_secret=webhook_secret,
    )
    client_secrets = [str(c["client_secret"]) for c in regions_for(sim_env.sim).values()]
    secrets = [db_password, smtp_password, webhook_secret, *client_secrets]
    assert (await cli("run", "all")).code == 0
    # A rejected record is counted in the bundle by its reason; its content stays out.
    await clean_db.execute(
        "INSERT INTO breezeway.rejected_records (region_code, entity_type, record_id, reason, raw) "
        "VALUES ('region_1', 'tasks', '77', $1, $2)",
        'home_id: "x" is not an integer',
        {"guest_note": "Door code 4417"},
    )
    tokens = [t for row in await clean_db.fetch("SELECT access_token, refresh_token FROM breezeway.api_tokens")
              for t in row.values() if t]  # fmt: skip
    assert tokens, "the run stored its tokens"
    secrets += tokens
    # A secret or token that reached alerts.log by accident does not leave with the bundle.
    with alerts_log.open("a") as log:
        log.write(f"oops: {client_secrets[0]} and {smtp_password} and {db_password}\n")
        log.write(f"echoed by an API: {' '.join(tokens)}\n")

    out = cli.dir / "out" / "bundle.tar.gz"
    result = await cli("bundle", "--out", str(out))
    assert result.code == 0, result.stderr
    assert out.stat().st_mode & 0o077 == 0
    with tarfile.open(out) as tar:
        members = {Path(m.name).name: tar.extractfile(m).read().decode() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert BUNDLE_FILES <= set(members)
    for name, text in members.items():
        for secret in secrets:
            assert secret not in text, f"{name} holds a configured secret"
    assert all(text.strip() for text in members.values())

    csv_lines = members["sync_log_24h.csv"].splitlines()
    assert csv_lines[0].startswith("id,region_code,entity_type,sync_status")
    assert len(csv_lines) == 1 + 2 * len(ENTITY_NAMES)
    assert "oops:" in members["alerts.log"]
    rejected = list(csv.DictReader(io.StringIO(members["rejected_24h.csv"])))
    assert [(r["region_code"], r["entity_type"], r["records"]) for r in rejected] == [
        ("region_1", "tasks", "1")
    ]
    assert rejected[0]["reason"] == 'home_id: "x" is not an integer'
    assert "Door code" not in "".join(members.values())
    config = json.loads(members["config.json"])
    assert config["database_url"].startswith("postgresql://")
    assert "***" in config["database_url"]
    assert config["smtp_password"] not in (None, "") and set(config["smtp_password"]) <= {"*"}
    assert config["regions"]["region_1"]["client_id"] == "sim-client-1"
    assert "breezeway-daemon" in members["versions.txt"]
    assert "postgresql" in members["versions.txt"]
    assert f"{2 * len(ENTITY_NAMES)} pairs, 0 unhealthy" in members["status.txt"]
    # status's webhook section too (webhooks are configured): no event yet from either region
    webhook_rows = [line.split() for line in members["status.txt"].splitlines()
                    if line.startswith("region_") and "never" in line.split()[:2]]  # fmt: skip
    assert sorted(row[0] for row in webhook_rows) == ["region_1", "region_2"]
    pairs = json.loads(members["status.json"])
    assert len(pairs) == 2 * len(ENTITY_NAMES)
    assert all("webhooks" in pair for pair in pairs if pair["entity"] == "tasks")
    assert members["journal.txt"]  # journal lines, or a note saying why there are none
    for secret in secrets:
        assert secret not in result.stdout + result.stderr


# --- purge and watchdog ----------------------------------------------------------------
async def insert_run(
    pool: asyncpg.Pool, region: str, entity: str, status: str, age: str, **columns: object
) -> int:
    heartbeat_age = columns.pop("heartbeat_age", age)
    extra = ", ".join(columns)
    values = ", ".join(f"${i}" for i in range(6, 6 + len(columns)))
    return await pool.fetchval(
        f"""
        INSERT INTO breezeway.etl_sync_log (region_code, entity_type, sync_status,
            sync_started_at, sync_completed_at, last_successful_sync_at, heartbeat_at
            {', ' + extra if extra else ''})
        VALUES ($1, $2, $3, now() - $4::text::interval,
            CASE WHEN $3 = 'running' THEN NULL ELSE now() - $4::text::interval + interval '1 minute' END,
            CASE WHEN $3 = 'success' THEN now() - $4::text::interval + interval '1 minute' END,
            now() - $5::text::interval {', ' + values if values else ''})
        RETURNING id
        """,
        region, entity, status, age, heartbeat_age, *columns.values(),
    )  # fmt: skip


async def test_purge_deletes_old_finished_rows_only(cli: Cli, clean_db: asyncpg.Pool) -> None:
    pool = clean_db
    a_old_success = await insert_run(pool, "region_1", "properties", "success", "10 days")
    a_latest_success = await insert_run(pool, "region_1", "properties", "success", "9 days")
    a_old_failed = await insert_run(pool, "region_1", "properties", "failed", "8 days")
    b_old_success = await insert_run(pool, "region_1", "tasks", "success", "10 days")
    b_recent_failed = await insert_run(pool, "region_1", "tasks", "failed", "2 days")
    b_recent_success = await insert_run(pool, "region_1", "tasks", "success", "1 day")
    c_old_running = await insert_run(pool, "region_2", "tags", "running", "20 days",
                                      owner_host="elsewhere", owner_pid=1)  # fmt: skip
    await pool.execute(
        "INSERT INTO breezeway.rejected_records (region_code, entity_type, reason, rejected_at) "
        "VALUES ('region_1', 'tasks', 'old', now() - interval '8 days'), "
        "('region_1', 'tasks', 'new', now() - interval '1 day')"
    )

    result = await cli("purge", "--older-than", "7d")
    assert result.code == 0, result.stderr
    assert "deleted 3 sync-log rows and 1 rejected records" in result.stdout
    left = {r["id"] for r in await pool.fetch("SELECT id FROM breezeway.etl_sync_log")}
    assert left == {a_latest_success, b_recent_failed, b_recent_success, c_old_running}
    assert not left & {a_old_success, a_old_failed, b_old_success}
    assert await pool.fetchval("SELECT array_agg(reason) FROM breezeway.rejected_records") == [
        "new"
    ]
    # A second purge finds nothing more.
    again = await cli("purge", "--older-than", "7d")
    assert "deleted 0 sync-log rows" in again.stdout


async def test_watchdog_command_fails_a_stale_running_row(cli: Cli, clean_db: asyncpg.Pool) -> None:
    stale = await insert_run(clean_db, "region_1", "tasks", "running", "20 minutes",
                             heartbeat_age="10 minutes", owner_host="other-host", owner_pid=4242)  # fmt: skip
    healthy = await insert_run(clean_db, "region_2", "tasks", "running", "2 minutes",
                               heartbeat_age="5 seconds", owner_host="other-host", owner_pid=4243)  # fmt: skip
    result = await cli("watchdog")
    assert result.code == 0, result.stderr
    assert "1 stuck run(s) marked failed" in result.stdout
    assert f"failed run {stale} (region_1/tasks)" in result.stdout
    rows = {
        r["id"]: r
        for r in await clean_db.fetch(
            "SELECT id, sync_status, error_message FROM breezeway.etl_sync_log"
        )
    }
    assert rows[stale]["sync_status"] == "failed"
    assert rows[stale]["error_message"].startswith("stuck: no heartbeat for 10 minutes")
    assert rows[healthy]["sync_status"] == "running"
