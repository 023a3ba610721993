"""Fixtures for the alert tests: a real SMTP server (aiosmtpd) and settings that use it."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from breezeway_daemon.alerts import Alerts, LoggedAlert, parse_alerts_log
from breezeway_daemon.config import Settings, load_settings

SMTP_USER = "alerts-user"
SMTP_PASSWORD = "smtp-pw-S3CRET-7731"
CLIENT_SECRET = "client-secret-S3CRET-9402"
DB_PASSWORD = "db-pw-S3CRET-5518"
SECRETS = (SMTP_PASSWORD, CLIENT_SECRET, DB_PASSWORD)
RECIPIENTS = ("ops@example.com", "oncall@example.com")


@dataclass
class Mailbox:
    """What the SMTP server received: parsed messages, raw bytes, and logins."""

    messages: list[EmailMessage] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def subjects(self) -> list[str]:
        with self.lock:
            return [str(message["Subject"]) for message in self.messages]

    def body(self, index: int = -1) -> str:
        with self.lock:
            return self.messages[index].get_content().replace("\r\n", "\n")

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()
            self.raw.clear()
            self.envelopes.clear()
            self.logins.clear()


class _Handler:
    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content or envelope.content
        message = email.message_from_bytes(content, policy=email.policy.default)
        with self.mailbox.lock:
            self.mailbox.raw.append(content)
            self.mailbox.messages.append(message)  # type: ignore[arg-type]
            self.mailbox.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[int, Mailbox]]:
    """One aiosmtpd server (its own thread) for the session; AUTH allowed without TLS."""
    mailbox = Mailbox()

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        user = data.login.decode() if isinstance(data.login, bytes) else str(data.login)
        password = data.password.decode() if isinstance(data.password, bytes) else data.password
        with mailbox.lock:
            mailbox.logins.append((user, password))
        return AuthResult(success=user == SMTP_USER and password == SMTP_PASSWORD)

    controller = Controller(
        _Handler(mailbox),
        hostname="127.0.0.1",
        port=_free_port(),
        authenticator=authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield controller.port, mailbox
    finally:
        controller.stop()


@pytest.fixture
def mailbox(smtp_server: tuple[int, Mailbox]) -> Mailbox:
    """The server's mailbox, emptied for this test."""
    smtp_server[1].clear()
    return smtp_server[1]


@pytest.fixture
async def alert_db(clean_db: asyncpg.Pool) -> asyncpg.Pool:
    """``clean_db`` with the alert tables emptied too."""
    await clean_db.execute(
        "TRUNCATE breezeway.alert_history, breezeway.alert_listing_sizes RESTART IDENTITY"
    )
    return clean_db


def _with_password(url: str, password: str) -> str:
    # The test server trusts every connection; a password in the URL only has to
    # be kept out of the alerts.
    scheme, rest = url.split("://", 1)
    user_host = rest.split("@", 1)
    if len(user_host) == 2:
        user, host = user_host
        return f"{scheme}://{user.split(':', 1)[0]}:{password}@{host}"
    return url


@pytest.fixture
def make_settings(
    base_settings: Settings, smtp_server: tuple[int, Mailbox], tmp_path: Path
) -> Callable[..., Settings]:
    """Settings mailing the test server, with secrets configured everywhere."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": _with_password(base_settings.dsn(), DB_PASSWORD),
            "state_dir": tmp_path,
            "regions": {
                name: {"client_id": f"id-{name}", "client_secret": CLIENT_SECRET}
                for name in ("nashville", "austin", "smoky", "mammoth")
            },
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_server[0],
            "smtp_username": SMTP_USER,
            "smtp_password": SMTP_PASSWORD,
            "smtp_timeout_s": 5,
            "alert_from": "breezeway@example.com",
            "alert_to": RECIPIENTS,
            "db_connect_timeout_s": 5,
        }
        values.update(overrides)
        return load_settings(Path("/nonexistent/bw-test.env"), **values)

    return build


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def alerts(settings: Settings, alert_db: asyncpg.Pool, mailbox: Mailbox) -> Alerts:
    return Alerts(settings, alert_db)


def logged(settings: Settings) -> list[LoggedAlert]:
    """The records of the settings' alerts.log."""
    path = settings.alerts_log_path
    return parse_alerts_log(path.read_text(encoding="utf-8")) if path.exists() else []
