"""The runbook's "what to do" steps, with this project's commands filled in.

The queries here are text an operator reads and runs by hand; nothing executes them.
"""

from __future__ import annotations

import shlex
from urllib.parse import unquote, urlsplit

from breezeway_daemon.config import Settings
from breezeway_daemon.errors import ErrorKind

INDENT = "    "

RUNBOOK_SECTIONS = {
    ErrorKind.DATABASE: "A. Database Connection Error",
    ErrorKind.API: "B. API Connection Error",
    ErrorKind.TOKEN: "C. Token Error",
    ErrorKind.DATA: "D. Data Error",
}


def psql_command(settings: Settings) -> str:
    """``psql -h host -p port -U user -d db`` for the configured database, never a password."""
    if settings.database_url is None:
        return "psql"
    try:
        parts = urlsplit(settings.database_url.get_secret_value())
        args = ["psql"]
        if parts.hostname:
            args += ["-h", parts.hostname]
        if parts.port:
            args += ["-p", str(parts.port)]
        if parts.username:
            args += ["-U", unquote(parts.username)]
        if parts.path.strip("/"):
            args += ["-d", unquote(parts.path.strip("/"))]
    except ValueError:
        return 'psql "$DATABASE_URL"'
    return shlex.join(args)


def numbered(steps: list[str]) -> str:
    """``  1. step``, continuation lines aligned under the step's text."""
    return "\n".join(
        f"  {number}. " + step.replace("\n", "\n     ") for number, step in enumerate(steps, 1)
    )


def _sql(psql: str, query: str) -> str:
    return f'{psql} -c "{query}"'


def _rejected_records(psql: str, region: str, entity: str) -> str:
    return _sql(
        psql,
        "SELECT record_id, reason, rejected_at FROM breezeway.rejected_records "
        f"WHERE region_code = '{region}' AND entity_type = '{entity}' "
        "ORDER BY rejected_at DESC LIMIT 20;",
    )


def _journal(region: str) -> str:
    return f'journalctl -u breezeway-daemon --since "-2h" | grep {region}'


def remedy(settings: Settings, kind: ErrorKind | None, region: str, entity: str | None) -> str:
    """The runbook's FAILURE ALERT steps for ``kind``."""
    kind = kind or ErrorKind.OTHER
    psql = psql_command(settings)
    retry = (
        f"breezeway-daemon run {region} {entity}" if entity else f"breezeway-daemon run {region}"
    )
    journal = _journal(region)
    if kind is ErrorKind.DATABASE:
        steps = [
            "Check database connectivity:\n" + INDENT + _sql(psql, "SELECT 1;"),
            "Check active connections:\n"
            + INDENT
            + _sql(
                psql,
                "SELECT COUNT(*), state FROM pg_stat_activity "
                "WHERE datname = current_database() GROUP BY state;",
            ),
            f"If the connection pool is exhausted, wait 5 minutes, then retry:\n{INDENT}{retry}",
            "If still failing, check the network and firewall to the database host, and the "
            f"daemon's log:\n{INDENT}{journal}",
        ]
    elif kind is ErrorKind.API:
        steps = [
            f"Check API connectivity:\n{INDENT}curl -I {settings.api_base_url}",
            f"Check that the region gets a token:\n{INDENT}breezeway-daemon token {region}",
            "If rate limited (429): the client already waits and retries with backoff; "
            "wait up to an hour before retrying by hand.",
            f"Retry:\n{INDENT}{retry}",
            f"Details:\n{INDENT}{journal}",
        ]
    elif kind is ErrorKind.TOKEN:
        upper = region.upper()
        steps = [
            "Check the token in the database:\n"
            + INDENT
            + _sql(
                psql,
                "SELECT region_code, token_expires_at, last_error FROM breezeway.api_tokens "
                f"WHERE region_code = '{region}';",
            ),
            f"Force a token refresh:\n{INDENT}breezeway-daemon token {region} --refresh\n"
            "or, as in the runbook:\n"
            + INDENT
            + _sql(
                psql,
                "UPDATE breezeway.api_tokens SET access_token = NULL, refresh_token = NULL, "
                "token_expires_at = NOW() - INTERVAL '1 hour' "
                f"WHERE region_code = '{region}';",
            ),
            f"Retry (gets a new token):\n{INDENT}{retry}",
            f"If still failing, check BREEZEWAY_REGIONS__{upper}__CLIENT_ID and "
            f"BREEZEWAY_REGIONS__{upper}__CLIENT_SECRET in {settings.env_file} against the "
            "Breezeway account, then reload the daemon:\n"
            f"{INDENT}systemctl kill -s HUP breezeway-daemon\n"
            "Invalid credentials must be re-issued by Breezeway: escalate.",
        ]
    elif kind is ErrorKind.DATA:
        steps = [
            f"Check the error in the log:\n{INDENT}{journal}",
            "Records the run could not store are kept with the reason:\n"
            + INDENT
            + _rejected_records(psql, region, entity or "{entity}"),
            "For foreign key errors, check the parent records exist:\n"
            + INDENT
            + _sql(
                psql, f"SELECT COUNT(*) FROM breezeway.properties WHERE region_code = '{region}';"
            ),
            "Run the parents first (reservations need properties; tasks need properties "
            "and, optionally, reservations):\n"
            f"{INDENT}breezeway-daemon run {region} properties\n"
            f"{INDENT}breezeway-daemon run {region} reservations\n"
            f"{INDENT}breezeway-daemon run {region} tasks",
        ]
    else:
        steps = [
            f"Details:\n{INDENT}{journal}",
            f"Every region and entity at a glance:\n{INDENT}breezeway-daemon status",
            f"Retry:\n{INDENT}{retry}",
        ]
    steps.append(
        f"Overall state: breezeway-daemon status. If it persists for more than 2 hours, "
        f"or more than 3 regions fail, escalate with:\n{INDENT}breezeway-daemon bundle"
    )
    section = RUNBOOK_SECTIONS.get(kind)
    title = f"What to do ({kind.value} error; runbook: FAILURE ALERT"
    title += f", {section})" if section else ")"
    return title + ":\n" + numbered(steps)


def warning_remedy(
    settings: Settings, region: str, entity: str, *, rejected: bool, shrunk: bool
) -> str:
    """The runbook's WARNING ALERT steps; ``rejected``/``shrunk``: the run's causes."""
    psql = psql_command(settings)
    steps = [
        "Recent runs of this pair:\n"
        + INDENT
        + _sql(
            psql,
            "SELECT region_code, entity_type, sync_started_at, sync_completed_at, "
            "EXTRACT(EPOCH FROM (sync_completed_at - sync_started_at)) AS duration_seconds, "
            "records_processed, api_calls_made FROM breezeway.etl_sync_log "
            f"WHERE region_code = '{region}' AND entity_type = '{entity}' "
            "ORDER BY sync_started_at DESC LIMIT 10;",
        ),
        "Slow or expensive once: usually volume or a slow API (no action). Consistently "
        f"over {settings.warn_duration_minutes:g} minutes: check database locks and API "
        "response times, then contact the dev team.",
    ]
    if rejected:
        steps.append(
            "The rejected records and why:\n" + INDENT + _rejected_records(psql, region, entity)
        )
    if shrunk:
        steps.append(
            "A shrunken listing: check with Breezeway whether the records are really gone; "
            "if the API returned too few by mistake, a full run restores them:\n"
            f"{INDENT}breezeway-daemon run {region} {entity} --full"
        )
    return "What to do (runbook: WARNING ALERT):\n" + numbered(steps)


def stuck_remedy() -> str:
    """The runbook's steps for runs stuck in ``running``."""
    return "\n".join(
        [
            "What to do (runbook: ETL Stuck in 'running' Status):",
            "  1. If the owner process still runs on its host (ps -p PID), it is hung: see",
            f'{INDENT}   journalctl -u breezeway-daemon --since "-2h"',
            "     and restart it if needed: systemctl restart breezeway-daemon",
            "  2. Retry each run (commands above); overall state: breezeway-daemon status",
            "  3. A sweep by hand: breezeway-daemon watchdog",
        ]
    )
