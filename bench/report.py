"""How a benchmark reports: its figures as one JSON object on the last line of its output."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from breezeway_daemon.logs import configure_logging  # noqa: E402


def run(
    bench: Callable[[argparse.Namespace], Awaitable[dict[str, Any]]],
    parser: argparse.ArgumentParser,
) -> None:
    """Parse the options, run ``bench`` with the daemon's warnings only, print its figures."""
    args = parser.parse_args()
    configure_logging("warning")
    figures = asyncio.run(bench(args))
    print(orjson.dumps(figures).decode())
