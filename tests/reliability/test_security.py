"""Security: no secret or token leaves the process; SQL only from validated identifiers;
each region's token only on its own requests; a world-readable env file is said at start.

The leak test runs the real ``breezeway-daemon`` commands and the real daemon process
against a faulty simulator (5xx, a revoked token mid-run, wrong credentials for one region,
422s whose body echoes the request's token, bad records of every kind) and a mail server
that requires a password, then searches every output for every configured secret and
every token the simulator issued.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from breezeway_daemon.config import ConfigError, Settings, load_settings
from breezeway_daemon.sync import SyncContext, run_batch
from breezeway_sim import BAD_RECORD_KINDS, Scale, Simulator

from support.cli import run_cli
from support.daemon import DaemonProcess, NotifySocket
from support.database import with_password
from support.leaks import bundle_files, database_outputs, find_leaks
from support.mail import SmtpServer
from support.recorder import record_issued_tokens, serve_recorded
from support.simenv import daemon_env_file_text, regions_for, settings_for, write_private

SRC = Path(__file__).resolve().parents[2] / "src" / "breezeway_daemon"
SMTP_USER = "alerts"
SMTP_PASSWORD = "smtp-pw-7Hq2-not-for-logs"
DB_PASSWORD = "db-pw-Vx93-not-for-logs"
WRONG_SECRET = "wrong-secret-Kd81-not-for-logs"
SCALE = Scale(properties=6, reservations_per_property=3, tasks_per_property=5, people=6,
              supplies=5, tags=3)  # fmt: skip
ALL_ENTITIES = "properties,reservations,tasks,people,supplies,tags"


# --- no secret or token in any output ----------------------------------------------------
def echo_token_422(sim: Simulator, company_index: int, path_end: str):
    """A rule answering 422 to that company's requests of ``path_end``, echoing the token."""

    def rule(path: str, query: str, token: str | None) -> tuple[int, bytes] | None:
        company = sim.tokens.peek_client(token) if token else None
        if (
            company is None
            or company.index != company_index
            or not path.rstrip("/").endswith(path_end)
        ):
            return None
        # A careless API: its error echoes the request's credential (whole, within the
        # 300 characters of an answer an error message keeps).
        body = {"error": "Unprocessable", "description": f"JWT {token}", "query": query}
        return 422, orjson.dumps(body)

    return rule


def revoke_after(sim: Simulator, company_index: int, requests: int, armed: dict[str, bool]):
    """Revoke the company's tokens at its ``requests``-th data request while ``armed``."""
    count = 0

    def hook(seen: Any) -> None:
        nonlocal count
        if not armed["on"] or seen.token is None or seen.path.startswith("/public/auth/"):
            return
        company = sim.tokens.peek_client(seen.token)
        if company is not None and company.index == company_index:
            count += 1
            if count == requests:
                sim.revoke_tokens(company.company_id)
                armed["revoked"] = True

    return hook


async def test_no_secret_or_token_in_any_output_of_faulty_syncs(
    clean_db: asyncpg.Pool, base_settings: Settings, tmp_path: Path
) -> None:
    pool = clean_db
    sim = Simulator(companies=3, scale=SCALE, seed=41)
    sim.faults.auth_rate_limit_per_minute = None  # renewals after revocations, at once
    sim.faults.bad_records = set(BAD_RECORD_KINDS)
    sim.faults.error_rate = 0.05
    issued = record_issued_tokens(sim)
    armed = {"on": False, "revoked": False}
    database_url = with_password(base_settings.dsn(), DB_PASSWORD)
    regions = regions_for(sim, secrets={"region_3": WRONG_SECRET})

    with SmtpServer(SMTP_USER, SMTP_PASSWORD) as smtp:
        async with serve_recorded(sim) as (server, recorder):
            sim.faults.fail_property_tasks = {min(sim.data(1001).properties)}  # a 500 every time
            recorder.rules.append(echo_token_422(sim, 2, "/supplies"))
            recorder.on_request.append(revoke_after(sim, 1, 8, armed))
            env_file = write_private(tmp_path / "breezeway.env", daemon_env_file_text(
                database_url, server.base_url, tmp_path, regions,
                max_in_flight_per_credential=8, http_retry_budget_s=10,
                hourly_entities=ALL_ENTITIES, http_max_attempts=2, batch_size=10,
                smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_username=SMTP_USER,
                smtp_password=SMTP_PASSWORD, smtp_timeout_s=5, alert_to="ops@example.com",
                alert_quiet_hours=0,
            ))  # fmt: skip
            secrets = {
                "SMTP password": SMTP_PASSWORD,
                "database password": DB_PASSWORD,
                **{f"{name} client secret": str(config["client_secret"])
                   for name, config in regions.items()},
            }  # fmt: skip
            # The search finds what is there.
            assert len(find_leaks({"env file": env_file.read_text()}, secrets)) == len(secrets)

            outputs: dict[str, str] = {}

            def keep(result: Any) -> Any:
                outputs[f"{' '.join(result.args)} stdout"] = result.stdout
                outputs[f"{' '.join(result.args)} stderr"] = result.stderr
                return result

            ran = keep(await run_cli("run", "all", env_file=env_file))
            assert ran.code == 1, (
                ran
            )  # region_3's credentials, region_1's tasks, region_2's supplies
            token = keep(await run_cli("token", "all", env_file=env_file))
            assert token.code == 1 and "region_3" in token.stderr, token

            # The daemon starts on tokens that were revoked meanwhile, and region_1's are
            # revoked again in the middle of its batch.
            sim.revoke_tokens(1001)
            sim.revoke_tokens(1002)
            armed["on"] = True
            notify = NotifySocket(tmp_path / "notify.sock")
            daemon = DaemonProcess(env_file, notify, {})
            try:
                await daemon.start()
                await daemon.wait_event("daemon_ready")
                daemon.signal(signal.SIGUSR1)
                finished = daemon.events[await daemon.wait_event("batch_finished")]
                assert finished["failed"] > 0
                daemon.signal(signal.SIGTERM)
                assert await daemon.wait_exit(30) == 0
            finally:
                await daemon.kill()
                notify.close()
            outputs["daemon stdout+stderr"] = "\n".join(daemon.raw_lines)
            assert armed["revoked"]

            for args in (("status",), ("check-config",), ("watchdog",)):
                keep(await run_cli(*args, env_file=env_file))
            bundle = keep(await run_cli("bundle", "--out", str(tmp_path / "b.tar.gz"),
                                        env_file=env_file))  # fmt: skip
            assert bundle.code == 0, bundle
            outputs.update(bundle_files(tmp_path / "b.tar.gz"))

        outputs["alerts.log"] = (tmp_path / "alerts.log").read_text()
        outputs.update(await database_outputs(pool))
        mails = smtp.messages()
        outputs.update({f"mail {i}": text for i, text in enumerate(mails)})
        logins = list(smtp.mailbox.logins)

    # The faults happened: the secrets and tokens were in use where they could leak.
    stats = sim.stats
    assert stats["sim-client-1"].unauthorized > 0  # revoked tokens met
    assert stats["sim-client-1"].server_errors > 0
    assert "422" in outputs["etl_sync_log"] and "region_3" in outputs["api_tokens.last_error"]
    assert await pool.fetchval("SELECT count(*) FROM breezeway.rejected_records") > 0
    assert mails and (SMTP_USER, SMTP_PASSWORD) in logins
    assert len(issued) >= 8
    tokens = dict.fromkeys(issued)
    for row in await pool.fetch("SELECT access_token, refresh_token FROM breezeway.api_tokens"):
        tokens.update(dict.fromkeys(filter(None, row)))
    secrets.update({f"token #{i} ({value[:12]}...)": value for i, value in enumerate(tokens)})

    assert find_leaks(outputs, secrets) == []


# --- SQL from validated identifiers only -----------------------------------------------
HOSTILE_REGION_NAMES = {
    "sql": "x'; drop table breezeway.tasks; --",
    "quote": "o'neil",
    "double quote": 'a"b',
    "space": "hill country",
    "dots": "..",
    "path": "../etc",
    "newline at the end": "abc\n",
    "NUL": "abc\x00",
    "unicode letter": "zürich",
    "fullwidth": "ｎashville",
    "arabic digits": "r١",
    "too long": "r" * 64,
    "leading digit": "1st",
    "only underscore": "_",
}
# Names that only lowercasing would make ASCII: refused as written, not silently renamed.
LOWERED_TO_ASCII = {"kelvin sign": "\u212a", "long s": "\u017fouth", "dotted I": "\u0130stanbul"}


def _one_config_line(result: Any) -> bool:
    lines = result.stderr.splitlines()
    return (
        result.code == 2
        and len(lines) == 1
        and lines[0].startswith("breezeway-daemon: configuration error: BREEZEWAY_REGIONS")
        and not result.stdout
    )


def _region_json(name: str) -> str:
    return json.dumps({name: {"client_id": "id", "client_secret": "secret"}})


def _region_env(name: str) -> dict[str, str]:
    return {f"BREEZEWAY_REGIONS__{name}__CLIENT_ID": "id",
            f"BREEZEWAY_REGIONS__{name}__CLIENT_SECRET": "secret"}  # fmt: skip


def test_hostile_region_names_are_refused_by_validation(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every spelling, every way in: settings given directly, JSON, the environment, a file."""
    for key in [key for key in os.environ if key.upper().startswith("BREEZEWAY_")]:
        monkeypatch.delenv(key)
    accepted: list[str] = []

    def refused(
        label: str,
        env: dict[str, str] | None = None,
        env_file: Path | None = None,
        **overrides: Any,
    ) -> None:
        with monkeypatch.context() as patch:
            for key, value in (env or {}).items():
                patch.setenv(key, value)
            try:
                load_settings(env_file or tmp_path / "absent.env", **overrides)
            except ConfigError as err:
                # An env file line that is no NAME=value line is refused as such.
                assert "\n" not in str(err), err
                assert str(err).startswith(("BREEZEWAY_REGIONS", "BREEZEWAY_ENV_FILE")), err
                return
        accepted.append(label)

    for label, name in {**HOSTILE_REGION_NAMES, **LOWERED_TO_ASCII}.items():
        refused(f"{label} (settings)", regions={name: {"client_id": "i", "client_secret": "s"}})
        refused(f"{label} (json)", {"BREEZEWAY_REGIONS": _region_json(name)})
        if "\x00" not in name and "=" not in name:  # an environment name cannot hold them
            refused(f"{label} (environment)", _region_env(name))
        if "\n" not in name and "\x00" not in name:
            env_file = tmp_path / "regions.env"
            env_file.write_text("".join(f"{k}={v}\n" for k, v in _region_env(name).items()))
            refused(f"{label} (env file)", env_file=env_file)
    assert accepted == []

    # The control: good names, in capitals as env files write them, up to 63 characters.
    long_name = "r" + "2" * 62
    good = load_settings(tmp_path / "absent.env", **{"regions": {long_name: {
        "client_id": "i", "client_secret": "s"}}})  # fmt: skip
    assert list(good.regions) == [long_name]
    with monkeypatch.context() as patch:
        for key, value in _region_env("HILL_COUNTRY").items():
            patch.setenv(key, value)
        assert list(load_settings(tmp_path / "absent.env").regions) == ["hill_country"]


async def test_hostile_region_names_stop_the_real_commands_with_one_line(tmp_path: Path) -> None:
    kelvin = LOWERED_TO_ASCII["kelvin sign"]
    env_file = write_private(tmp_path / "kelvin.env", "".join(
        f"{k}={v}\n" for k, v in _region_env(kelvin).items()))  # fmt: skip
    sql = HOSTILE_REGION_NAMES["sql"]
    nowhere = {"BREEZEWAY_ENV_FILE": "/nonexistent"}
    cases = {
        "sql (environment)": run_cli("check-config", env={**nowhere, **_region_env(sql)}),
        "newline (json)": run_cli("check-config", env={
            **nowhere, "BREEZEWAY_REGIONS": _region_json("abc\n")}),
        "kelvin sign (env file)": run_cli("check-config", env_file=env_file),
        "sql (run)": run_cli("run", "all", env={**nowhere, **_region_env(sql)}),
        # The daemon refuses to start on one, before it touches the database.
        "sql (serve)": run_cli("serve", env={
            **nowhere, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x",
            "BREEZEWAY_REGIONS": _region_json(sql)}),
    }  # fmt: skip
    results = dict(zip(cases, await asyncio.gather(*cases.values()), strict=True))
    wrong = {
        label: str(result) for label, result in results.items() if not _one_config_line(result)
    }
    assert wrong == {}


# Every name a SQL statement in src/ may interpolate, per file: table, column and key names
# built from the entity specs (or constants), never a region, entity or record value.
ALLOWED_SQL_INTERPOLATIONS = {
    "db/entity_table.py": {
        "newer",
        "self.staging",
        "self.name",
        "fixed",
        "columns",
        "key_list",
        "updates",
        "spec.table",
        "fixed_touch",
        "SCHEMA",
        "spec.parent_ref.entity",
        "name",
        "KEY_TYPES[name]",
        "i + 4",
        "i + 3",
    },
    "sync/listings.py": {
        "self.spec.table",
        "extra_where",
        "MAX_DELETION_CHECKS + 1",
        # the parent entity's table and the column naming it: per-parent listings
        "self.parent.table",
        "self.spec.parent_ref.column",
    },
    # ChildSpec constants: its table, staging table, columns and keys
    "db/children.py": {
        "SCHEMA",
        "spec.table",
        "spec.parent_column",
        "table",
        "staging",
        "columns",
        "parent",
        "own",
    },
    "status.py": {"entity"},  # a key of the schedule: validated entity names only
    # a constant table name; a role name checked by ROLE_NAME, then quoted by the server
    "db/schema.py": {"table", "ident", "role"},
    # not SQL: the listing-shrank warning says records "missing from the listing"
    "alerts/messages.py": {"size", "ratio", "previous_listing", "result.counts.records_deleted"},
}
SQL_WORDS = ("SELECT ", "INSERT ", "UPDATE ", "DELETE ", " FROM ", "CREATE ", "ALTER ", "DROP ",
             "TRUNCATE ", "COPY ", " WHERE ", "GRANT ", "REVOKE ")  # fmt: skip
# The runbook's queries, filled into the remedy text an operator reads (never runs).
NOT_EXECUTED = {"alerts/remedies.py"}


def sql_interpolations() -> dict[str, set[str]]:
    """Per source file, the expressions interpolated into f-strings that look like SQL."""
    found: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), relative)):
            if not isinstance(node, ast.JoinedStr):
                continue
            text = "".join(
                part.value for part in node.values
                if isinstance(part, ast.Constant) and isinstance(part.value, str)
            ).upper()  # fmt: skip
            if not any(word in text for word in SQL_WORDS):
                continue
            for part in node.values:
                if isinstance(part, ast.FormattedValue):
                    found.setdefault(relative, set()).add(ast.unparse(part.value))
    return found


def test_sql_interpolates_only_names_from_the_entity_specs() -> None:
    found = sql_interpolations()
    assert found.get("db/entity_table.py"), "the scan finds the loader's statements"
    unexpected = {
        relative: sorted(names - ALLOWED_SQL_INTERPOLATIONS.get(relative, set()))
        for relative, names in found.items()
        if relative not in NOT_EXECUTED and names - ALLOWED_SQL_INTERPOLATIONS.get(relative, set())
    }
    assert unexpected == {}
    # Statements that take a value use parameters: none is built with % or str.format.
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "format" and isinstance(node.func.value, ast.Constant):  # fmt: skip
                assert not any(w in str(node.func.value.value).upper() for w in SQL_WORDS), path
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) \
                    and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str):  # fmt: skip
                assert not any(w in node.left.value.upper() for w in SQL_WORDS), path


def test_sql_scan_sees_an_interpolated_value(tmp_path: Path) -> None:
    """The scan above would catch a region interpolated into a statement."""
    tree = ast.parse("q = f\"SELECT * FROM breezeway.tasks WHERE region_code = '{region}'\"")
    joined = next(node for node in ast.walk(tree) if isinstance(node, ast.JoinedStr))
    names = {ast.unparse(p.value) for p in joined.values if isinstance(p, ast.FormattedValue)}
    assert names == {"region"} and not names <= ALLOWED_SQL_INTERPOLATIONS["sync/listings.py"]


# --- each region's token on its own requests only ----------------------------------------
def company_asked_for(sim: Simulator, path: str, query: str) -> int | None:
    """The company a data request is about, from its parameters (or its task id)."""
    from urllib.parse import parse_qs

    params = {key: values[0] for key, values in parse_qs(query).items()}
    if "company_id" in params:
        return int(params["company_id"])
    record_id = params.get("home_id") or params.get("property_id")
    task_ids = [part for part in path.split("/") if part.isdigit()]
    if record_id is None and task_ids:
        record_id = task_ids[-1]  # /task/{id}, /task/{id}/comments, /task/{id}/requirements
    if record_id is None:
        return None
    index = int(record_id) // 10_000_000
    return sim.companies[index - 1].company_id if 0 < index <= len(sim.companies) else None


async def test_a_regions_token_is_sent_only_on_that_regions_requests(
    clean_db: asyncpg.Pool, base_settings: Settings
) -> None:
    sim = Simulator(companies=3, scale=SCALE, seed=43)
    sim.faults.auth_rate_limit_per_minute = None
    armed = {"on": True, "revoked": False}
    async with serve_recorded(sim) as (server, recorder):
        recorder.on_request.append(revoke_after(sim, 2, 5, armed))  # renewals mid-batch
        settings = settings_for(base_settings, sim, server.base_url, regions=regions_for(sim),
                                region_concurrency=3)  # fmt: skip
        async with SyncContext.open(settings) as ctx:
            results = await run_batch(ctx, list(settings.regions), list(settings.hourly_entities)
                                      + list(settings.daily_entities))  # fmt: skip
            await ctx.pool.execute("UPDATE breezeway.api_tokens SET access_token = NULL")
            results += await run_batch(ctx, list(settings.regions), ["properties", "tasks"])
    assert [r for r in results if r.status != "success"] == []
    assert armed["revoked"]

    wrong: list[str] = []
    about: dict[int, int] = {}
    data = recorder.data_requests()
    for seen in data:
        holder = sim.tokens.peek_client(seen.token) if seen.token else None
        wanted = company_asked_for(sim, seen.path, seen.query)
        if holder is None:
            wrong.append(f"{seen.path}?{seen.query}: no token")
        elif wanted is not None and wanted != holder.company_id:
            wrong.append(f"{seen.path}?{seen.query}: token of {holder.company_id}")
        if wanted is not None:
            about[wanted] = about.get(wanted, 0) + 1
    assert wrong == []
    # Every request was attributable, every company was asked about, and the simulator's
    # own counters (by token) agree with who was asked about.
    assert sum(about.values()) == len(data)
    assert sorted(about) == [c.company_id for c in sim.companies]
    for company in sim.companies:
        assert sim.stats[company.client_id].data_requests == about[company.company_id]


# --- the env file's permissions -------------------------------------------------------------
@pytest.mark.parametrize("mode", [0o640, 0o604], ids=["group", "others"])
async def test_an_env_file_readable_by_others_is_warned_about_at_start(
    mode: int, clean_db: asyncpg.Pool, base_settings: Settings, tmp_path: Path
) -> None:
    sim = Simulator(companies=1, scale=SCALE, seed=45)

    async def start_with(file_mode: int) -> DaemonProcess:
        env_file = tmp_path / f"breezeway-{file_mode:o}.env"
        write_private(env_file, daemon_env_file_text(
            base_settings.dsn(), "http://127.0.0.1:9", tmp_path, regions_for(sim)
        )).chmod(file_mode)  # fmt: skip
        daemon = DaemonProcess(env_file, notify, {})
        try:
            await daemon.start()
            await daemon.wait_event("daemon_ready")
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait_exit(30) == 0
        finally:
            await daemon.kill()
        return daemon

    notify = NotifySocket(tmp_path / "notify.sock")
    try:
        readable = await start_with(mode)
        private = await start_with(0o600)
    finally:
        notify.close()
    warnings = [e for e in readable.events if e.get("event") == "env_file_readable_by_others"]
    assert len(warnings) == 1 and warnings[0]["level"] == "warning"
    assert warnings[0]["path"].endswith(f"breezeway-{mode:o}.env")
    assert "chmod 600" in warnings[0]["remedy"]
    assert not [e for e in private.events if e.get("event") == "env_file_readable_by_others"]
