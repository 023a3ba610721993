"""Fixtures for the alert tests: a real SMTP server (aiosmtpd) and settings that use it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from breezeway_daemon.alerts import Alerts
from breezeway_daemon.config import Settings, load_settings

from support.alerts import CLIENT_SECRET, DB_PASSWORD, RECIPIENTS, SMTP_PASSWORD, SMTP_USER
from support.database import with_password
from support.mail import Mailbox, SmtpServer
from support.simenv import NO_ENV_FILE


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[int, Mailbox]]:
    """One aiosmtpd server (its own thread) for the session; AUTH allowed without TLS."""
    with SmtpServer(SMTP_USER, SMTP_PASSWORD) as server:
        yield server.port, server.mailbox


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


@pytest.fixture
def make_settings(
    base_settings: Settings, smtp_server: tuple[int, Mailbox], tmp_path: Path
) -> Callable[..., Settings]:
    """Settings mailing the test server, with secrets configured everywhere."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": with_password(base_settings.dsn(), DB_PASSWORD),
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
        return load_settings(NO_ENV_FILE, **values)

    return build


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def alerts(settings: Settings, alert_db: asyncpg.Pool, mailbox: Mailbox) -> Alerts:
    return Alerts(settings, alert_db)
