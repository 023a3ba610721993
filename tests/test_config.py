"""Configuration: the fixed names operators use, the env file, validation, masking.

Invalid values are checked through the real command (``breezeway-daemon check-config``,
a subprocess with a clean environment): exit code 2 and one stderr line naming the setting.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from pathlib import Path

import pytest

from breezeway_daemon.cli import main
from breezeway_daemon.config import ConfigError, Settings, env_file_path, load_settings

from support.cli import CliResult, run_cli

ROOT = Path(__file__).resolve().parents[1]
RUNBOOK_REGIONS = {"nashville", "austin", "smoky", "hilton_head", "breckenridge", "sea_ranch",
                   "mammoth", "hill_country"}  # fmt: skip

# Every fixed name of the foundation issue (point 2), with a value that is not its default.
FIXED = {
    "DATABASE_URL": "postgresql://breezeway:db-secret-1@db.example:5433/bw",
    "BREEZEWAY_API_BASE_URL": "http://127.0.0.1:8900",
    "BREEZEWAY_REGIONS__NASHVILLE__CLIENT_ID": "nash-id",
    "BREEZEWAY_REGIONS__NASHVILLE__CLIENT_SECRET": "nash-secret-1",
    "BREEZEWAY_REGIONS__NASHVILLE__COMPANY_ID": "8001",
    "BREEZEWAY_REGIONS__NASHVILLE__ENABLED": "false",
    "BREEZEWAY_REGIONS__HILL_COUNTRY__CLIENT_ID": "hill-id",
    "BREEZEWAY_REGIONS__HILL_COUNTRY__CLIENT_SECRET": "hill-secret-2",
    "BREEZEWAY_REQUESTS_PER_MINUTE": "120",
    "BREEZEWAY_SMTP_HOST": "smtp.example",
    "BREEZEWAY_SMTP_PORT": "2525",
    "BREEZEWAY_SMTP_USERNAME": "mailer",
    "BREEZEWAY_SMTP_PASSWORD": "smtp-secret-3",
    "BREEZEWAY_SMTP_STARTTLS": "true",
    "BREEZEWAY_ALERT_FROM": "etl@example.com",
    "BREEZEWAY_ALERT_TO": "ops@example.com, oncall@example.com",
    "BREEZEWAY_STATE_DIR": "/srv/bw-state",
    "BREEZEWAY_ALERTS_LOG": "/srv/bw-logs/alerts.log",
}
SECRETS = ("db-secret-1", "nash-secret-1", "hill-secret-2", "smtp-secret-3")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No BREEZEWAY_* or DATABASE_URL from the caller; cwd without a .env."""
    for name in list(os.environ):
        if name.startswith("BREEZEWAY_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def write_env(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{name}={value}\n" for name, value in values.items()))
    return path


def assert_fixed_values(settings: Settings) -> None:
    assert settings.dsn() == FIXED["DATABASE_URL"]
    assert settings.api_base_url == "http://127.0.0.1:8900"
    assert set(settings.regions) == {"nashville", "hill_country"}
    nash = settings.regions["nashville"]
    assert nash.client_id == "nash-id"
    assert nash.client_secret.get_secret_value() == "nash-secret-1"
    assert nash.company_id == 8001 and nash.enabled is False
    hill = settings.regions["hill_country"]
    assert hill.company_id is None and hill.enabled is True  # the defaults
    assert list(settings.enabled_regions) == ["hill_country"]
    assert settings.requests_per_minute == 120
    assert settings.smtp_host == "smtp.example" and settings.smtp_port == 2525
    assert settings.smtp_username == "mailer"
    assert settings.smtp_password is not None
    assert settings.smtp_password.get_secret_value() == "smtp-secret-3"
    assert settings.smtp_starttls is True
    assert settings.alert_from == "etl@example.com"
    assert settings.alert_to == ("ops@example.com", "oncall@example.com")
    assert settings.state_dir == Path("/srv/bw-state")
    assert settings.alerts_log_path == Path("/srv/bw-logs/alerts.log")


def test_every_fixed_name_is_read_from_the_env_file(clean_env, tmp_path: Path) -> None:
    env_file = write_env(tmp_path / "custom.env", FIXED)
    clean_env.setenv("BREEZEWAY_ENV_FILE", str(env_file))
    assert env_file_path() == env_file
    settings = load_settings()  # the path comes from BREEZEWAY_ENV_FILE
    assert settings.env_file == env_file
    assert_fixed_values(settings)


def test_every_fixed_name_is_read_from_the_environment(clean_env, tmp_path: Path) -> None:
    for name, value in FIXED.items():
        clean_env.setenv(name, value)
    clean_env.setenv("BREEZEWAY_ENV_FILE", str(tmp_path / "absent.env"))
    assert_fixed_values(load_settings())


def test_the_environment_wins_over_the_env_file(clean_env, tmp_path: Path) -> None:
    env_file = write_env(tmp_path / "breezeway.env", FIXED)
    clean_env.setenv("BREEZEWAY_ENV_FILE", str(env_file))
    clean_env.setenv("DATABASE_URL", "postgresql://other@elsewhere/bw")
    clean_env.setenv("BREEZEWAY_REQUESTS_PER_MINUTE", "60")
    clean_env.setenv("BREEZEWAY_REGIONS__NASHVILLE__CLIENT_SECRET", "from-the-environment")
    clean_env.setenv("BREEZEWAY_REGIONS__NASHVILLE__ENABLED", "true")
    clean_env.setenv("BREEZEWAY_SMTP_PORT", "587")
    settings = load_settings()
    assert settings.dsn() == "postgresql://other@elsewhere/bw"
    assert settings.requests_per_minute == 60
    nash = settings.regions["nashville"]
    assert nash.client_secret.get_secret_value() == "from-the-environment"
    assert nash.enabled is True
    assert nash.client_id == "nash-id" and nash.company_id == 8001  # the rest from the file
    assert settings.smtp_port == 587
    assert settings.alert_from == "etl@example.com"


def test_without_breezeway_env_file_dot_env_in_the_working_directory_is_read(
    clean_env, tmp_path: Path
) -> None:
    write_env(tmp_path / ".env", {"BREEZEWAY_REQUESTS_PER_MINUTE": "33"})
    assert env_file_path() == Path(".env")
    assert load_settings().requests_per_minute == 33


def test_defaults(clean_env) -> None:
    settings = load_settings(Path("/nonexistent/breezeway.env"))
    assert settings.api_base_url == "https://api.breezeway.io"
    assert settings.requests_per_minute == 180
    assert settings.regions == {} and settings.alert_to == ()
    assert settings.alerts_log_path == settings.state_dir / "alerts.log"


def test_env_example_validates_and_lists_the_runbooks_eight_regions(clean_env) -> None:
    example = ROOT / ".env.example"
    settings = load_settings(example)
    assert set(settings.regions) == RUNBOOK_REGIONS
    assert set(settings.enabled_regions) == RUNBOOK_REGIONS
    for region in settings.regions.values():
        assert region.client_id and region.client_secret.get_secret_value()
    # Every fixed name is documented in it.
    text = example.read_text()
    for name in FIXED:
        if "__NASHVILLE__" in name or "__HILL_COUNTRY__" in name:
            name = "BREEZEWAY_REGIONS__<REGION>__" + name.rsplit("__", 1)[1]
        assert name in text, name
    assert "BREEZEWAY_ENV_FILE" in text


def test_secrets_are_secret_types(clean_env, tmp_path: Path) -> None:
    settings = load_settings(write_env(tmp_path / "s.env", FIXED))
    shown = repr(settings) + str(settings) + repr(settings.regions)
    for secret in SECRETS:
        assert secret not in shown


# --- through the real command ---------------------------------------------------------
ENV_FILE_NUMBERS = itertools.count()


async def check_config(
    tmp_path: Path, environ: dict[str, str], file_values: dict[str, str] | None = None,
    *args: str, mode: int = 0o600,
) -> CliResult:  # fmt: skip
    """``breezeway-daemon check-config`` with only ``environ`` and an env file (``mode``) set."""
    env_file = tmp_path / f"check-{next(ENV_FILE_NUMBERS)}.env"
    write_env(env_file, file_values or {}).chmod(mode)
    return await run_cli("check-config", *args, env_file=env_file, env=environ, home=tmp_path)


VALID = {
    "DATABASE_URL": "postgresql://breezeway@localhost/bw",
    "BREEZEWAY_REGIONS__AUSTIN__CLIENT_ID": "austin-id",
    "BREEZEWAY_REGIONS__AUSTIN__CLIENT_SECRET": "austin-secret",
}
INJECTION = "X';DROP TABLE BREEZEWAY.TASKS;--"
# case -> (environment on top of VALID, env-file lines, words the one line must hold)
INVALID = {
    "region-name": ({"BREEZEWAY_REGIONS__SEA-RANCH__CLIENT_ID": "x",
                     "BREEZEWAY_REGIONS__SEA-RANCH__CLIENT_SECRET": "y"}, {},
                    ["BREEZEWAY_REGIONS", "sea-ranch"]),
    "region-sql-injection": ({f"BREEZEWAY_REGIONS__{INJECTION}__CLIENT_ID": "x",
                              f"BREEZEWAY_REGIONS__{INJECTION}__CLIENT_SECRET": "y"}, {},
                             ["BREEZEWAY_REGIONS", "drop table"]),
    "region-name-in-file": ({}, {"BREEZEWAY_REGIONS__BAD.NAME__CLIENT_ID": "x",
                                 "BREEZEWAY_REGIONS__BAD.NAME__CLIENT_SECRET": "y"},
                            ["BREEZEWAY_REGIONS", "bad.name"]),
    "cron": ({"BREEZEWAY_HOURLY_CRON": "61 * * * *"}, {}, ["BREEZEWAY_HOURLY_CRON"]),
    "cron-in-file": ({}, {"BREEZEWAY_DAILY_CRON": "every day"}, ["BREEZEWAY_DAILY_CRON"]),
    "entity": ({"BREEZEWAY_DAILY_ENTITIES": "people,bookings"}, {},
               ["BREEZEWAY_DAILY_ENTITIES", "bookings"]),
    "timezone": ({"BREEZEWAY_TIMEZONE": "Mars/Olympus_Mons"}, {},
                 ["BREEZEWAY_TIMEZONE", "Mars/Olympus_Mons"]),
    "missing-secret": ({"BREEZEWAY_REGIONS__MAMMOTH__CLIENT_ID": "mammoth-id"}, {},
                       ["BREEZEWAY_REGIONS__MAMMOTH__CLIENT_SECRET"]),
    "empty-secret-in-file": ({}, {"BREEZEWAY_REGIONS__SMOKY__CLIENT_ID": "smoky-id",
                                  "BREEZEWAY_REGIONS__SMOKY__CLIENT_SECRET": ""},
                             ["BREEZEWAY_REGIONS__SMOKY__CLIENT_SECRET"]),
    "requests-per-minute": ({"BREEZEWAY_REQUESTS_PER_MINUTE": "fast"}, {},
                            ["BREEZEWAY_REQUESTS_PER_MINUTE"]),
    "smtp-port": ({"BREEZEWAY_SMTP_PORT": "twenty-five"}, {}, ["BREEZEWAY_SMTP_PORT"]),
    "company-id": ({"BREEZEWAY_REGIONS__AUSTIN__COMPANY_ID": "abc"}, {},
                   ["BREEZEWAY_REGIONS__AUSTIN__COMPANY_ID"]),
    "enabled": ({"BREEZEWAY_REGIONS__AUSTIN__ENABLED": "maybe"}, {},
                ["BREEZEWAY_REGIONS__AUSTIN__ENABLED"]),
    "starttls": ({"BREEZEWAY_SMTP_STARTTLS": "sometimes"}, {}, ["BREEZEWAY_SMTP_STARTTLS"]),
    "alert-to": ({"BREEZEWAY_ALERT_TO": "ops@example.com,nobody"}, {},
                 ["BREEZEWAY_ALERT_TO", "nobody"]),
    "api-base-url": ({"BREEZEWAY_API_BASE_URL": "api.breezeway.io"}, {},
                     ["BREEZEWAY_API_BASE_URL"]),
    "smtp-without-recipients": ({"BREEZEWAY_SMTP_HOST": "smtp.example"}, {},
                                ["BREEZEWAY_ALERT_TO"]),
    "env-file-is-a-directory": ({"BREEZEWAY_ENV_FILE": "/"}, {}, ["BREEZEWAY_ENV_FILE"]),
}  # fmt: skip


# The kinds the runbook's operators get wrong most; each also runs as a real process below.
IN_A_REAL_PROCESS = ("region-name", "region-sql-injection", "region-name-in-file", "cron",
                     "entity", "timezone", "missing-secret", "requests-per-minute")  # fmt: skip


def problem(case: str, words: list[str], code: int, stdout: str, stderr: str) -> str | None:
    lines = stderr.splitlines()
    if (
        code != 2
        or len(lines) != 1
        or not lines[0].startswith("breezeway-daemon: configuration error: ")
        or not all(word.lower() in lines[0].lower() for word in words)
        or stdout
    ):
        return f"{case}: exit {code}, stdout {stdout!r}, stderr {stderr!r}"
    return None


@pytest.mark.parametrize("case", list(INVALID))
def test_an_invalid_value_exits_2_with_one_line_naming_the_setting(
    case: str, clean_env: pytest.MonkeyPatch, tmp_path: Path, saved_logging: None,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The command's own code path (``cli.main``), in this process: one test per case."""
    environ, file_values, words = INVALID[case]
    env_file = write_env(tmp_path / "breezeway.env", file_values)
    clean_env.setenv("BREEZEWAY_ENV_FILE", str(env_file))
    for name, value in {**VALID, **environ}.items():
        clean_env.setenv(name, value)
    code = main(["check-config", "--quiet"])
    out, err = capsys.readouterr()
    assert problem(case, words, code, out, err) is None


async def test_an_invalid_value_in_a_real_process_exits_2_with_one_line(tmp_path: Path) -> None:
    cases = {case: INVALID[case] for case in IN_A_REAL_PROCESS}
    results = await asyncio.gather(
        *(check_config(tmp_path, {**VALID, **env}, file) for env, file, _ in cases.values())
    )
    problems = [
        problem(case, words, r.code, r.stdout, r.stderr)
        for (case, (_, _, words)), r in zip(cases.items(), results, strict=True)
    ]
    assert [p for p in problems if p] == []


async def test_a_valid_configuration_exits_0(tmp_path: Path) -> None:
    quiet = await check_config(tmp_path, VALID, {}, "--quiet")
    assert (quiet.code, quiet.stdout, quiet.stderr) == (0, "", "")
    shown = await check_config(tmp_path, {}, FIXED)
    assert shown.code == 0, shown.stderr
    config = json.loads(shown.stdout)
    assert config["regions"]["nashville"]["client_id"] == "nash-id"
    assert config["requests_per_minute"] == 120
    assert config["alerts_log"] == "/srv/bw-logs/alerts.log"


async def test_an_env_file_others_may_read_is_warned_about_and_still_exits_0(
    tmp_path: Path,
) -> None:
    """The unit runs ``check-config --quiet`` before every start: an env file that group or
    others may read is said on stderr (the file and the ``chmod 600`` that fixes it); exit 0."""
    env_file = write_env(tmp_path / "breezeway.env", VALID)

    async def check(mode: int, *args: str) -> CliResult:
        env_file.chmod(mode)
        return await run_cli("check-config", *args, env_file=env_file, home=tmp_path)

    readable = await check(0o644, "--quiet")
    assert (readable.code, readable.stdout, len(readable.stderr_lines)) == (0, "", 1), readable
    warning = readable.last_stderr_line
    assert "warning" in warning and f"chmod 600 {env_file}" in warning, warning
    group = await check(0o640)
    assert group.code == 0 and json.loads(group.stdout)["regions"], group
    assert f"chmod 600 {env_file}" in group.stderr, group

    private = await check(0o600, "--quiet")
    assert (private.code, private.stdout, private.stderr) == (0, "", ""), private


@pytest.mark.parametrize(
    ("database_url", "password"),
    [
        ("postgresql://breezeway:db-secret-1@db.example:5433/bw", "db-secret-1"),
        ("postgresql://breezeway:p%40ss%2Fw0rd@db.example/bw", "p%40ss%2Fw0rd"),
        ("postgresql://breezeway@db.example/bw?sslmode=require&password=q-secret-9", "q-secret-9"),
    ],
    ids=["userinfo", "percent-encoded", "query-parameter"],
)
async def test_check_config_masks_every_secret(
    tmp_path: Path, database_url: str, password: str
) -> None:
    result = await check_config(tmp_path, {"DATABASE_URL": database_url}, FIXED)
    assert result.code == 0, result.stderr
    for secret in (*SECRETS[1:], password):
        assert secret not in result.stdout + result.stderr
    assert "ss/w0rd" not in result.stdout
    config = json.loads(result.stdout)
    assert config["database_url"].startswith("postgresql://breezeway")
    assert "db.example" in config["database_url"] and "***" in config["database_url"]
    for name in ("nashville", "hill_country"):
        assert set(config["regions"][name]["client_secret"]) == {"*"}
    assert set(config["smtp_password"]) == {"*"}
    # What is not secret is shown as it is.
    assert config["smtp_username"] == "mailer"
    assert config["regions"]["nashville"]["client_id"] == "nash-id"


def test_load_settings_raises_config_error_naming_the_setting(clean_env) -> None:
    with pytest.raises(ConfigError, match=r"^BREEZEWAY_PAGE_SIZE: "):
        load_settings(Path("/nonexistent.env"), page_size=0)


@pytest.mark.parametrize(
    "database_url",
    [
        "postgresql://breezeway:p%40ss-w0rd@db.example/bw",
        "postgresql://breezeway@db.example/bw?password=p%40ss-w0rd&sslmode=require",
    ],
    ids=["userinfo", "query-parameter"],
)
def test_the_database_password_is_a_configured_secret_in_every_spelling(
    clean_env, database_url: str
) -> None:
    from breezeway_daemon.redact import configured_secrets, scrub

    settings = load_settings(Path("/nonexistent.env"), database_url=database_url)
    found = configured_secrets(settings)
    text = scrub("connecting with p@ss-w0rd (p%40ss-w0rd) failed", found)
    assert "w0rd" not in text


async def test_a_pool_too_small_for_the_regions_at_once_is_warned_about_and_still_exits_0(
    tmp_path: Path,
) -> None:
    """Two regions at once, 3 batches in flight each, need 6 connections: a pool of 4 is said
    on stderr with the size that fixes it; a pool of 6, or one region at once, is not."""
    two = {**VALID, "BREEZEWAY_REGIONS__SMOKY__CLIENT_ID": "smoky-id",
           "BREEZEWAY_REGIONS__SMOKY__CLIENT_SECRET": "fake-smoky-secret",
           "BREEZEWAY_REGION_CONCURRENCY": "8", "BREEZEWAY_BATCHES_IN_FLIGHT": "3"}  # fmt: skip
    small = await check_config(tmp_path, {**two, "BREEZEWAY_DB_POOL_SIZE": "4"}, None, "--quiet")
    assert (small.code, small.stdout, len(small.stderr_lines)) == (0, "", 1), small
    warning = small.last_stderr_line
    assert "warning" in warning and "BREEZEWAY_DB_POOL_SIZE=4" in warning, warning
    assert "fix: BREEZEWAY_DB_POOL_SIZE=6" in warning, warning
    enough = await check_config(tmp_path, {**two, "BREEZEWAY_DB_POOL_SIZE": "6"}, None, "--quiet")
    assert (enough.code, enough.stderr) == (0, ""), enough
    one_at_once = {**two, "BREEZEWAY_DB_POOL_SIZE": "4", "BREEZEWAY_REGION_CONCURRENCY": "1"}
    single = await check_config(tmp_path, one_at_once, None, "--quiet")
    assert (single.code, single.stderr) == (0, ""), single
