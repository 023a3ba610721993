"""The ``breezeway-daemon`` command.

Every subcommand is a small async function taking the parsed arguments and
returning an exit code. A failure prints one line on stderr and exits non-zero:
2 for invalid configuration or usage, 1 for everything else.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, NoReturn

from breezeway_daemon import __version__
from breezeway_daemon.config import (
    ConfigError,
    Settings,
    env_file_is_private,
    load_settings,
    sizing_warnings,
)
from breezeway_daemon.entities import RESYNC_ENTITIES

Command = Callable[[argparse.Namespace], Awaitable[int]]
COMMANDS: dict[str, Command] = {}


class CommandFailed(Exception):
    """A command's expected failure: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def command(name: str) -> Callable[[Command], Command]:
    def register(func: Command) -> Command:
        COMMANDS[name] = func
        return func

    return register


def settings_from(args: argparse.Namespace, **overrides: Any) -> Settings:
    return (
        load_settings(args.env_file, **overrides) if args.env_file else load_settings(**overrides)
    )


# --- commands ---------------------------------------------------------------------
@command("check-config")
async def check_config(args: argparse.Namespace) -> int:
    """Validate the configuration and print it with secrets masked."""
    import json

    settings = settings_from(args)
    if not env_file_is_private(settings.env_file):
        # A warning, not an error: the unit runs this before every start (ExecStartPre).
        print(f"breezeway-daemon: warning: {settings.env_file} is readable by group or "
              f"others and holds secrets; fix: chmod 600 {settings.env_file}", file=sys.stderr)  # fmt: skip
    for warning in sizing_warnings(settings):
        print(f"breezeway-daemon: warning: {warning}", file=sys.stderr)
    if not args.quiet:
        print(json.dumps(settings.masked(), indent=2, default=str))
    return 0


@command("migrate")
async def migrate_command(args: argparse.Namespace) -> int:
    """Apply pending migrations."""
    from breezeway_daemon.db import schema
    from breezeway_daemon.db.pool import open_connection

    settings = settings_from(args)
    async with open_connection(settings, "breezeway-daemon migrate") as conn:
        applied = await schema.migrate(conn)
    if applied:
        for migration in applied:
            print(f"applied {migration.version:03d}_{migration.name}")
    else:
        print("schema is up to date")
    return 0


@command("grant-readonly")
async def grant_readonly_command(args: argparse.Namespace) -> int:
    """Grant a role read access (the entity tables, sync log, cursors, rejected records; never api_tokens)."""
    from breezeway_daemon.db import schema
    from breezeway_daemon.db.pool import open_connection

    settings = settings_from(args)
    async with open_connection(settings, "breezeway-daemon grant-readonly") as conn:
        try:
            tables = await schema.grant_readonly(conn, args.role)
        except ValueError as err:
            raise CommandFailed(str(err), code=2) from None
        except schema.RoleMissing as err:
            raise CommandFailed(str(err)) from None
    print(f"{args.role} can read breezeway.{', breezeway.'.join(tables)} (not api_tokens)")
    return 0


def _regions(settings: Settings, which: str) -> list[str]:
    """``all`` (every enabled region) or one configured region."""
    if which == "all":
        regions = list(settings.enabled_regions)
        if not regions:
            raise CommandFailed("no enabled regions are configured", code=2)
        return regions
    if which not in settings.regions:
        known = ", ".join(sorted(settings.regions)) or "none"
        raise CommandFailed(f"unknown region {which!r} (configured: {known})", code=2)
    return [which]


def _entities(names: list[str]) -> list[str]:
    from breezeway_daemon.entities import ENTITY_NAMES

    for name in names:
        if name not in ENTITY_NAMES:
            raise CommandFailed(
                f"unknown entity {name!r} (known: {', '.join(ENTITY_NAMES)})", code=2
            )
    return names or list(ENTITY_NAMES)


def print_results(results: list[Any]) -> None:
    """The summary table of a batch of runs."""
    header = f"{'region':<16} {'entity':<13} {'status':<8} {'records':>8} {'new':>7} {'updated':>8} " \
             f"{'deleted':>8} {'rejected':>8} {'calls':>6} {'seconds':>8}  error"  # fmt: skip
    print(header)
    print("-" * len(header))
    for r in results:
        c = r.counts
        print(
            f"{r.region:<16} {r.entity:<13} {r.status:<8} {c.records_processed:>8} {c.records_new:>7} "
            f"{c.records_updated:>8} {c.records_deleted:>8} {c.records_rejected:>8} "
            f"{c.api_calls_made:>6} {r.duration_s:>8.1f}  {r.error or ''}"
        )


def fail_if_any_failed(results: list[Any]) -> int:
    """0, or the one stderr line (and exit 1) naming the runs that failed."""
    failed = [f"{r.region}/{r.entity}" for r in results if r.failed]
    if failed:
        raise CommandFailed(f"{len(failed)} of {len(results)} runs failed: {', '.join(failed)}")
    return 0


@command("run")
async def run_command(args: argparse.Namespace) -> int:
    """Sync regions now: run REGION|all [ENTITY ...] [--full]; exit 1 if any run failed."""
    from breezeway_daemon.alerts import Alerts, report_batch
    from breezeway_daemon.sync import SyncContext, run_batch

    settings = settings_from(args)
    regions = _regions(settings, args.region)
    entities = _entities(args.entities)
    mode = "full" if args.full else "incremental"
    async with SyncContext.open(settings, application_name="breezeway-daemon run") as ctx:
        results = await run_batch(ctx, regions, entities, mode=mode, trigger="manual")
        await report_batch(Alerts(settings, ctx.pool), "Manual ETL", results)
    print_results(results)
    return fail_if_any_failed(results)


@command("resync")
async def resync_command(args: argparse.Namespace) -> int:
    """Re-fetch a date window: resync REGION ENTITY --since DATE [--until DATE]."""
    from breezeway_daemon.sync import EntitySync, SyncContext, SyncRequest

    settings = settings_from(args)
    if args.entity not in RESYNC_ENTITIES:
        raise CommandFailed(f"resync is for {' and '.join(RESYNC_ENTITIES)}", code=2)
    until = args.until or datetime.now(UTC).date()
    if until < args.since:
        raise CommandFailed("--until is before --since", code=2)
    results = []
    async with SyncContext.open(settings, application_name="breezeway-daemon resync") as ctx:
        for region in _regions(settings, args.region):
            request = SyncRequest(region, args.entity, "resync", "manual", args.since, until)
            results.append(await EntitySync(ctx, request).run())
    print_results(results)
    return fail_if_any_failed(results)


@command("token")
async def token_command(args: argparse.Namespace) -> int:
    """Show each region's token state (never the token); --refresh forces new ones."""
    from breezeway_daemon.alerts import Alerts
    from breezeway_daemon.api.client import BreezewayApi
    from breezeway_daemon.db.pool import open_pool
    from breezeway_daemon.errors import describe

    settings = settings_from(args)
    regions = _regions(settings, args.region)
    failed: list[str] = []
    async with open_pool(settings, "breezeway-daemon token", max_size=2) as pool:
        api = BreezewayApi(settings, pool)
        try:
            print(
                f"{'region':<16} {'valid':<6} {'expires (UTC)':<20} {'generation':>10}  last error"
            )
            for region in regions:
                error = None
                try:
                    if args.refresh:
                        await api.tokens.force_refresh(region)
                    else:
                        await api.tokens.get(region)
                except Exception as err:  # noqa: BLE001 - reported per region
                    error = describe(err)
                    failed.append(region)
                    await Alerts(settings, pool).token_failure(region, error)
                state = await api.tokens.state(region)
                valid = state.has_access_token and error is None
                expires = (
                    state.expires_at.strftime("%Y-%m-%d %H:%M:%S") if state.expires_at else "-"
                )
                print(
                    f"{region:<16} {'yes' if valid else 'no':<6} {expires:<20} {state.generation:>10}  "
                    f"{error or state.last_error or ''}"
                )
        finally:
            await api.aclose()
    if failed:
        raise CommandFailed(f"no valid token for {', '.join(failed)} (see 'last error' above)")
    return 0


@command("webhooks")
async def webhooks_command(args: argparse.Namespace) -> int:
    """Breezeway webhook subscriptions: subscribe REGION|all --url URL, list, unsubscribe."""
    from breezeway_daemon.webhooks.subscriptions import run_subscriptions

    settings = settings_from(args)
    regions = _regions(settings, getattr(args, "region", None) or "all")
    failures = await run_subscriptions(settings, args.action, regions, args.url)
    if failures:
        raise CommandFailed("; ".join(failures))
    return 0


@command("simulate")
async def simulate_command(args: argparse.Namespace) -> int:
    """Serve the built-in Breezeway API simulator until stopped (options: simulate --help)."""
    from breezeway_sim import cli as simulator_cli

    return await simulator_cli.serve(simulator_cli.parse_args(args.simulator_args))


@command("serve")
async def serve_command(args: argparse.Namespace) -> int:
    """Run the daemon (what systemd starts): scheduled batches, watchdog, reloads."""
    from breezeway_daemon.daemon import serve

    settings = settings_from(args)
    return await serve(settings, args.env_file)


@command("watchdog")
async def watchdog_command(args: argparse.Namespace) -> int:
    """Fail stuck "running" runs now (one sweep of the daemon's watchdog)."""
    from breezeway_daemon.db.pool import open_pool
    from breezeway_daemon.watchdog import sweep

    settings = settings_from(args)
    async with open_pool(settings, "breezeway-daemon watchdog", max_size=2) as pool:
        stuck = await sweep(pool, settings)
    for run in stuck:
        print(f"failed run {run.run_id} ({run.region}/{run.entity}): {run.reason}")
    print(f"{len(stuck)} stuck run(s) marked failed")
    return 0


@command("purge")
async def purge_command(args: argparse.Namespace) -> int:
    """Delete finished sync-log rows and rejected records older than --older-than (e.g. 7d)."""
    from breezeway_daemon.db.pool import open_pool
    from breezeway_daemon.retention import purge_sync_log

    settings = settings_from(args)
    async with open_pool(settings, "breezeway-daemon purge", max_size=2) as pool:
        counts = await purge_sync_log(pool, args.older_than)
    print(
        f"deleted {counts['sync_log_rows']} sync-log rows and {counts['rejected_records']} "
        f"rejected records older than {args.older_than}"
    )
    return 0


@command("status")
async def status_command(args: argparse.Namespace) -> int:
    """Per region and entity: last run, last success, lag, failures, records; exit 1 if unhealthy."""
    import json

    from breezeway_daemon import status
    from breezeway_daemon.db.pool import open_pool

    settings = settings_from(args)
    async with open_pool(settings, "breezeway-daemon status", max_size=2) as pool:
        statuses = await status.collect(pool, settings)
        if args.json:
            pairs = [s.as_json() for s in statuses]
            await status.add_webhooks(pool, settings, pairs)
            print(json.dumps(pairs, indent=2))
        else:
            print(status.render(statuses) + await status.webhooks_section(pool, settings))
    if not statuses:
        raise CommandFailed("no enabled regions or scheduled entities to report on")
    unhealthy = [f"{s.region}/{s.entity}" for s in statuses if not s.healthy]
    if unhealthy:
        raise CommandFailed(
            f"{len(unhealthy)} of {len(statuses)} pairs unhealthy: {', '.join(unhealthy)}"
        )
    return 0


@command("bundle")
async def bundle_command(args: argparse.Namespace) -> int:
    """Write a tar.gz for escalation (sync log, alerts.log, journal, config masked, status)."""
    from pathlib import Path

    from breezeway_daemon import bundle
    from breezeway_daemon.db.pool import open_pool

    settings = settings_from(args)
    out = args.out or Path(f"breezeway-bundle-{datetime.now(UTC):%Y%m%d_%H%M}.tar.gz")
    async with open_pool(settings, "breezeway-daemon bundle", max_size=2) as pool:
        names = await bundle.build(pool, settings, out)
    print(f"wrote {out} ({', '.join(names)})")
    return 0


@command("demo")
async def demo_command(args: argparse.Namespace) -> int:
    """The zero-setup demo: embedded PostgreSQL (unless DATABASE_URL), simulator, full and incremental sync."""
    import os
    from pathlib import Path

    from breezeway_daemon.demo import run_demo

    return await run_demo(
        database_url=os.environ.get("DATABASE_URL"),
        state_dir=args.state_dir or Path(".state/demo"),
        scale=args.scale,
        keep_running=args.keep_running,
    )


# --- parser -----------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """A usage error is one line on stderr (not the whole usage), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="breezeway-daemon",
        description="Keeps a PostgreSQL copy of Breezeway data for several regions.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--env-file",
        type=_path,
        default=None,
        help="env file to read (default: $BREEZEWAY_ENV_FILE, else .env)",
    )
    parser.add_argument("--log-level", default="info", help="debug, info, warning or error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check-config", help=check_config.__doc__)
    check.add_argument(
        "--quiet", action="store_true", help="validate only; print nothing when valid"
    )
    sub.add_parser("migrate", help=migrate_command.__doc__)
    grant = sub.add_parser("grant-readonly", help=grant_readonly_command.__doc__)
    grant.add_argument("role", nargs="?", default="breezeway_readonly",
                       help="an existing role (default: breezeway_readonly)")  # fmt: skip

    run = sub.add_parser("run", help=run_command.__doc__)
    run.add_argument("region", help="a configured region, or 'all'")
    run.add_argument("entities", nargs="*", metavar="ENTITY", help="default: every entity")
    run.add_argument(
        "--full", action="store_true", help="full listings (and deletions) instead of incremental"
    )

    resync = sub.add_parser("resync", help=resync_command.__doc__)
    resync.add_argument("region", help="a configured region, or 'all'")
    resync.add_argument("entity", choices=RESYNC_ENTITIES)
    resync.add_argument("--since", type=date.fromisoformat, required=True, metavar="YYYY-MM-DD")
    resync.add_argument("--until", type=date.fromisoformat, default=None, metavar="YYYY-MM-DD")

    token = sub.add_parser("token", help=token_command.__doc__)
    token.add_argument("region", help="a configured region, or 'all'")
    token.add_argument("--refresh", action="store_true", help="get new tokens now")

    status = sub.add_parser("status", help=status_command.__doc__)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    bundle = sub.add_parser("bundle", help=bundle_command.__doc__)
    bundle.add_argument("--out", type=_path, default=None, metavar="FILE")
    demo = sub.add_parser("demo", help=demo_command.__doc__)
    demo.add_argument("--state-dir", type=_path, default=None, help="default: .state/demo")
    demo.add_argument("--scale", choices=("demo", "tiny"), default="demo")
    demo.add_argument(
        "--keep-running", action="store_true", help="keep the database and simulator up"
    )
    hooks = sub.add_parser("webhooks", help=webhooks_command.__doc__)
    actions = hooks.add_subparsers(dest="action", required=True, metavar="ACTION")
    subscribe = actions.add_parser("subscribe", help="subscribe task and property-status events")
    subscribe.add_argument("region", help="a configured region, or 'all'")
    subscribe.add_argument("--url", required=True, help="the public base URL of this daemon")
    actions.add_parser("list", help="the subscriptions of every region")
    unsubscribe = actions.add_parser("unsubscribe", help="remove a region's subscriptions")
    unsubscribe.add_argument("region", help="a configured region, or 'all'")
    hooks.set_defaults(url=None)
    sub.add_parser("serve", help=serve_command.__doc__)
    sub.add_parser("watchdog", help=watchdog_command.__doc__)
    purge = sub.add_parser("purge", help=purge_command.__doc__)
    purge.add_argument("--older-than", type=duration, required=True, metavar="AGE",
                       help="e.g. 7d, 12h, 90m")  # fmt: skip

    # The simulator parses its own options, so that no other command imports it.
    # (main passes it every argument after "simulate").
    sub.add_parser("simulate", help=simulate_command.__doc__, add_help=False)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``argv`` parsed; the ``simulate`` command keeps the arguments that are its own."""
    args, extra = parser.parse_known_args(argv)
    if args.command != "simulate" and extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.simulator_args = extra
    return args


def duration(value: str) -> timedelta:
    """``7d``, ``12h``, ``90m`` or ``30s`` as a timedelta."""
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    number, unit = value[:-1], value[-1:].lower()
    if unit not in units or not number.isdigit() or int(number) <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not an age such as 7d, 12h or 90m")
    return timedelta(**{units[unit]: int(number)})


def _path(value: str) -> Any:
    from pathlib import Path

    return Path(value)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    from breezeway_daemon.logs import configure_logging

    level = args.log_level
    if args.command == "demo" and level == "info":
        level = "warning"  # the demo prints its own progress
    configure_logging(level, stream=sys.stderr if args.command != "serve" else None)
    try:
        return asyncio.run(COMMANDS[args.command](args))
    except ConfigError as err:
        print(f"breezeway-daemon: configuration error: {err}", file=sys.stderr)
        return 2
    except CommandFailed as err:
        print(f"breezeway-daemon: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # one clear line, never a traceback, for operators
        from breezeway_daemon.errors import describe

        print(f"breezeway-daemon: {args.command} failed: {describe(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
