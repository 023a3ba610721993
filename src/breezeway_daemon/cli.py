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
from typing import Any

from breezeway_daemon import __version__
from breezeway_daemon.config import ConfigError, Settings, load_settings

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
    print(json.dumps(settings.masked(), indent=2, default=str))
    return 0


@command("migrate")
async def migrate_command(args: argparse.Namespace) -> int:
    """Apply pending migrations."""
    from breezeway_daemon.db import migrations
    from breezeway_daemon.db.pool import connect

    settings = settings_from(args)
    conn = await connect(settings, application_name="breezeway-daemon migrate")
    try:
        applied = await migrations.migrate(conn)
    finally:
        await conn.close()
    if applied:
        for migration in applied:
            print(f"applied {migration.version:03d}_{migration.name}")
    else:
        print("schema is up to date")
    return 0


# --- parser -----------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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

    sub.add_parser("check-config", help=check_config.__doc__)
    sub.add_parser("migrate", help=migrate_command.__doc__)
    return parser


def _path(value: str) -> Any:
    from pathlib import Path

    return Path(value)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from breezeway_daemon.logs import configure_logging

    configure_logging(args.log_level, stream=sys.stderr if args.command != "serve" else None)
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
