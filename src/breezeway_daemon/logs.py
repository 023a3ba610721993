"""Logging: structlog events to stdout, shaped for where stdout goes.

(``configure_logging``: journal entries, JSON lines or console lines; secrets masked).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import orjson
import structlog

from breezeway_daemon import journal
from breezeway_daemon.redact import scrub_credentials

SECRET_KEY = re.compile(
    r"(secret|password|passwd|token|authorization|api_key|apikey|credential|dsn|database_url)",
    re.IGNORECASE,
)
MASK = "***"
# "<N>" prefixes journald reads (sd-daemon(3)): 3 err, 4 warning, 6 info, 7 debug.
SYSLOG_PRIORITY = {"critical": 2, "error": 3, "exception": 3, "warning": 4, "info": 6, "debug": 7}
SAFE_TOKEN_KEYS = {"token_expires_at", "token_generation_count", "tokens", "token_state"}


def mask_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace the value of any key that looks like it holds a secret, nested ones too."""
    for key in list(event_dict):
        event_dict[key] = _masked(key, event_dict[key])
    return event_dict


def _masked(key: Any, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(key, str) and key not in SAFE_TOKEN_KEYS and SECRET_KEY.search(key):
        return MASK
    if isinstance(value, str):
        return scrub_credentials(value)
    if isinstance(value, Mapping):
        return {k: _masked(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(None, item) for item in value]
    return value


def _journald_prefix(
    _logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event_dict["_priority"] = SYSLOG_PRIORITY.get(event_dict.get("level", method), 6)
    return event_dict


class _JournaldJSON:
    """Renders ``<N>{json}``: journald strips the prefix and keeps N as the priority."""

    def __call__(self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> str:
        priority = event_dict.pop("_priority", 6)
        return f"<{priority}>" + orjson.dumps(event_dict, default=str).decode()


def _json(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> str:
    return orjson.dumps(event_dict, default=str).decode()


def configure_logging(
    level: str = "info", *, stream: TextIO | None = None, force_json: bool | None = None
) -> None:
    """Set up structlog (and the stdlib root logger, for libraries) once per process.

    - Under systemd, when stdout is the journal and its socket is there: journal entries with fields
      (``REGION=``, ``ENTITY=``, ``RUN_ID=``, ``EVENT=``...), see ``journal.py``.
    - Under systemd otherwise (``JOURNAL_STREAM`` set): one JSON object per line, prefixed with the
      ``<N>`` syslog priority so that journald keeps each event's level.
    - Elsewhere, not on a terminal: JSON lines without the prefix.
    - On a terminal: readable console lines.

    Context variables (``region``, ``entity``, ``run_id``) bound with
    ``structlog.contextvars.bind_contextvars`` appear on every event of that task. Values of
    secret-looking keys are masked, whatever logs them; in every other string value, URL passwords,
    ``Bearer``/``JWT`` tokens and JWTs are (an error message may quote an API answer that echoed the
    request's token).
    """
    stream = stream or sys.stdout
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        numeric_level = logging.INFO
    on_journal = bool(os.environ.get("JOURNAL_STREAM"))
    on_tty = stream.isatty() if force_json is None else not force_json

    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        mask_secrets,
    ]
    writer = journal.writer_for(stream) if on_journal and not on_tty else None
    factory: Any = structlog.PrintLoggerFactory(file=stream)
    if writer is not None:
        processors += [_journald_prefix, journal.journal_fields]
        factory = journal.logger_factory(writer, stream)
    elif on_journal and not on_tty:
        processors += [_journald_prefix, _JournaldJSON()]
    elif on_tty:
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
    else:
        processors.append(_json)

    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
    # Libraries (asyncpg, apscheduler, httpx) log through the stdlib: warnings only.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
