"""``breezeway-daemon bundle``: everything the runbook's escalation asks for, in one tar.gz.

Contents: the last 24 hours of ``etl_sync_log`` as CSV, the last 24 hours' rejected
records counted by region, entity and reason (never the records themselves),
``alerts.log``, the daemon's recent journal lines (or a note saying why there are
none), the effective configuration with secrets masked, versions, and the status
output (with its webhook section when webhooks are configured).
Every file passes through a scrubber that replaces each configured secret
(client secrets, SMTP and database passwords, the stored API tokens) with ``***``, so a secret that
reached a log by accident does not leave with the bundle.
"""

from __future__ import annotations

import asyncio
import io
import json
import platform
import shutil
import tarfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import asyncpg

from breezeway_daemon import __version__, status
from breezeway_daemon.config import Settings
from breezeway_daemon.redact import configured_secrets, scrub

JOURNAL_LINES = 2000


SYNC_LOG_24H = (
    "SELECT * FROM breezeway.etl_sync_log WHERE sync_started_at > now() - interval '24 hours' "
    "ORDER BY sync_started_at DESC"
)
REJECTED_24H = (
    "SELECT region_code, entity_type, reason, count(*) AS records, min(rejected_at) AS first, "
    "max(rejected_at) AS last FROM breezeway.rejected_records "
    "WHERE rejected_at > now() - interval '24 hours' "
    "GROUP BY 1, 2, 3 ORDER BY 1, 2, records DESC, 3"
)


async def query_csv(pool: asyncpg.Pool, query: str) -> str:
    """``query``'s rows as CSV with a header."""
    buffer = io.BytesIO()

    async def write(data: bytes) -> None:
        buffer.write(data)

    async with pool.acquire() as conn:
        await conn.copy_from_query(query, output=write, format="csv", header=True)
    return buffer.getvalue().decode()


async def journal_lines(unit: str = "breezeway-daemon") -> str:
    if shutil.which("journalctl") is None:
        return "(no journal: journalctl is not installed on this machine)\n"
    try:
        proc = await asyncio.create_subprocess_exec(
            "journalctl", "-u", unit, "--since", "24 hours ago", "-n", str(JOURNAL_LINES),
            "--no-pager", "-o", "short-iso",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    except (OSError, TimeoutError) as error:
        return f"(no journal: journalctl failed: {error})\n"
    text = out.decode(errors="replace")
    if proc.returncode != 0 or not text.strip() or text.strip().startswith("-- No entries --"):
        reason = err.decode(errors="replace").strip() or "no entries for the unit"
        return f"(no journal lines for {unit}: {reason})\n"
    return text


async def versions(pool: asyncpg.Pool) -> str:
    lines = [f"breezeway-daemon {__version__}", f"python {platform.python_version()}"]
    for package in (
        "asyncpg",
        "httpx",
        "apscheduler",
        "structlog",
        "pydantic",
        "pydantic-settings",
        "aiosmtplib",
    ):
        try:
            lines.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            lines.append(f"{package} (not installed)")
    lines.append(f"postgresql {await pool.fetchval('SHOW server_version')}")
    migrations = await pool.fetch(
        "SELECT version, name, applied_at FROM breezeway.schema_migrations ORDER BY 1"
    )
    lines += [
        f"migration {m['version']:03d}_{m['name']} applied {m['applied_at']:%Y-%m-%d %H:%M}"
        for m in migrations
    ]
    lines.append(f"host {platform.node()}, {platform.platform()}")
    return "\n".join(lines) + "\n"


async def build(pool: asyncpg.Pool, settings: Settings, out: Path) -> list[str]:
    """Write the bundle to ``out``; returns the names of the files inside."""
    stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M")
    root = f"breezeway-bundle-{stamp}"
    alerts_path = settings.alerts_log_path
    try:
        alerts = alerts_path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        alerts = f"(no alerts.log at {alerts_path}: {err.strerror})\n"
    statuses = await status.collect(pool, settings)
    pairs = [s.as_json() for s in statuses]
    await status.add_webhooks(pool, settings, pairs)
    webhooks = await status.webhooks_section(pool, settings)
    files = {
        "sync_log_24h.csv": await query_csv(pool, SYNC_LOG_24H),
        "rejected_24h.csv": await query_csv(pool, REJECTED_24H),
        "alerts.log": alerts,
        "journal.txt": await journal_lines(),
        "config.json": json.dumps(settings.masked(), indent=2, default=str) + "\n",
        "versions.txt": await versions(pool),
        "status.txt": status.render(statuses) + webhooks + "\n",
        "status.json": json.dumps(pairs, indent=2) + "\n",
    }
    secrets = configured_secrets(settings) + await stored_tokens(pool)
    await asyncio.to_thread(
        write_tar, out, root, {name: scrub(text, secrets) for name, text in files.items()}
    )
    return list(files)


async def stored_tokens(pool: asyncpg.Pool) -> list[str]:
    """The tokens in ``api_tokens`` (this process holds none): masked by value in the bundle."""
    rows = await pool.fetch("SELECT access_token, refresh_token FROM breezeway.api_tokens")
    found = {t for row in rows for t in (row["access_token"], row["refresh_token"]) if t}
    return sorted(found, key=len, reverse=True)


def write_tar(out: Path, root: str, files: dict[str, str]) -> None:
    """Write ``files`` under ``root/`` in a tar.gz only its owner can read."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
            tar.addfile(info, io.BytesIO(data))
    out.chmod(0o600)
