"""Delivering an alert: mail through SMTP (aiosmtplib) and a record in ``alerts.log``.

Neither raises: a broken mail server or an unwritable log is logged (without the SMTP
password) and the caller carries on.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

import aiosmtplib
import structlog

from breezeway_daemon.config import Settings
from breezeway_daemon.errors import describe
from breezeway_daemon.redact import configured_secrets, scrub

log = structlog.get_logger(__name__)

INDENT = "    "


# --- alerts.log ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LoggedAlert:
    """One record of ``alerts.log``."""

    at: datetime
    subject: str
    body: str


def format_record(at: datetime, subject: str, body: str) -> str:
    """One ``alerts.log`` record, readable with ``tail -50``.

    A header line (ISO 8601 UTC time, one space, the subject), the body with every line
    indented by four spaces (blank body lines are four spaces), and a blank line.
    """
    lines = body.rstrip("\n").split("\n")
    indented = "\n".join(INDENT + line if line.strip() else INDENT for line in lines)
    return f"{at.astimezone(UTC).isoformat(timespec='seconds')} {subject}\n{indented}\n\n"


def parse_alerts_log(text: str) -> list[LoggedAlert]:
    """The records of an ``alerts.log``; lines that fit no record are skipped."""
    records: list[LoggedAlert] = []
    header: tuple[datetime, str] | None = None
    body: list[str] = []

    def close() -> None:
        if header is not None:
            records.append(LoggedAlert(header[0], header[1], "\n".join(body).rstrip()))

    for line in text.split("\n"):
        if line.startswith(INDENT) and header is not None:
            body.append(line[len(INDENT) :])
        elif line.strip() == "":
            close()
            header, body = None, []
        else:
            close()
            stamp, _, subject = line.partition(" ")
            try:
                header = (datetime.fromisoformat(stamp), subject)
            except ValueError:
                header = None
            body = []
    close()
    return records


def _append_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)


class AlertsLog:
    """``alerts.log``, appended to by one writer at a time."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    async def append(self, settings: Settings, at: datetime, subject: str, body: str) -> None:
        """Append one record; an unwritable file is logged, never raised."""
        path = settings.alerts_log_path
        try:
            async with self._lock:
                await asyncio.to_thread(_append_file, path, format_record(at, subject, body))
        except Exception as err:  # noqa: BLE001 - an unwritable log must not fail a sync
            error = scrub(describe(err), configured_secrets(settings))
            log.error("alerts_log_unwritable", path=str(path), error=error)


# --- mail ---------------------------------------------------------------------------------
def mail_configured(settings: Settings) -> bool:
    return bool(settings.smtp_host and settings.alert_to)


async def send_mail(settings: Settings, subject: str, body: str, label: str) -> str | None:
    """Mail one alert to ``alert_to``; the error as one line (never raised), or None if sent.

    ``label`` goes into the ``X-Breezeway-Alert`` header, for mail filters.
    """
    assert settings.smtp_host is not None
    message = EmailMessage()
    message["From"] = settings.alert_from
    message["To"] = ", ".join(settings.alert_to)
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    domain = settings.alert_from.rpartition("@")[2] or "localhost"
    message["Message-ID"] = make_msgid("breezeway-alert", domain=domain)
    message["X-Breezeway-Alert"] = label
    message.set_content(body)
    implicit_tls = settings.smtp_port == 465  # SMTPS: TLS from the first byte
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
    try:
        await asyncio.wait_for(
            aiosmtplib.send(
                message,
                hostname=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_username or None,
                password=password if settings.smtp_username else None,
                use_tls=implicit_tls,
                start_tls=settings.smtp_starttls and not implicit_tls,
                timeout=settings.smtp_timeout_s,
                # socket.getfqdn() (aiosmtplib's default) may block on DNS.
                local_hostname=socket.gethostname(),
            ),
            # Each SMTP step is bounded by smtp_timeout_s; this bounds them all.
            settings.smtp_timeout_s * 3,
        )
    except Exception as err:  # noqa: BLE001 - a broken mail server must not fail a sync
        error = scrub(describe(err), configured_secrets(settings))
        log.error("alert_mail_failed", subject=subject, smtp_host=settings.smtp_host,
                  smtp_port=settings.smtp_port, error=error)  # fmt: skip
        return error
    log.info("alert_mailed", subject=subject, recipients=len(settings.alert_to))
    return None
