"""Which secret shows up in which output: a secret itself, or for a JWT a telling part of it;
and the outputs to search (the database's texts, a bundle's files)."""

from __future__ import annotations

import tarfile
from collections.abc import Mapping
from pathlib import Path

import asyncpg


def needles(secret: str) -> list[str]:
    """What would betray ``secret``: itself and, for a JWT, its claims or its signature
    alone (a cut-off token is a leak too; the header is the same in every token)."""
    found = [secret]
    parts = secret.split(".")
    if len(parts) == 3:
        found += [part for part in parts[1:] if len(part) >= 20]
    return found


def find_leaks(outputs: Mapping[str, str], secrets: Mapping[str, str]) -> list[str]:
    """``"<secret name> in <output name>"`` for every secret found in an output."""
    leaks = []
    for output, text in outputs.items():
        for name, secret in secrets.items():
            if any(needle in text for needle in needles(secret)):
                leaks.append(f"{name} in {output}")
    return leaks


async def database_outputs(pool: asyncpg.Pool) -> dict[str, str]:
    """Every text the database keeps about runs, rejections, tokens' errors and alerts."""
    queries = {
        "etl_sync_log": "SELECT t::text FROM breezeway.etl_sync_log t",
        "rejected_records.reason": "SELECT reason FROM breezeway.rejected_records",
        "api_tokens.last_error": "SELECT last_error FROM breezeway.api_tokens WHERE last_error IS NOT NULL",
        "alert_history": "SELECT t::text FROM breezeway.alert_history t",
    }
    return {
        name: "\n".join(str(row[0]) for row in await pool.fetch(query))
        for name, query in queries.items()
    }


def bundle_files(path: Path) -> dict[str, str]:
    with tarfile.open(path) as tar:
        return {
            f"bundle:{member.name.split('/', 1)[1]}": tar.extractfile(member)
            .read()
            .decode(errors="replace")  # type: ignore[union-attr]
            for member in tar.getmembers()
            if member.isfile()
        }
