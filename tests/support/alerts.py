"""The alert tests' fake credentials and recipients, and the records of an alerts.log."""

from __future__ import annotations

from breezeway_daemon.alerts import LoggedAlert, parse_alerts_log
from breezeway_daemon.config import Settings

SMTP_USER = "alerts-user"
SMTP_PASSWORD = "smtp-pw-S3CRET-7731"
CLIENT_SECRET = "client-secret-S3CRET-9402"
DB_PASSWORD = "db-pw-S3CRET-5518"
SECRETS = (SMTP_PASSWORD, CLIENT_SECRET, DB_PASSWORD)
RECIPIENTS = ("ops@example.com", "oncall@example.com")


def logged(settings: Settings) -> list[LoggedAlert]:
    """The records of the settings' alerts.log (none while it does not exist)."""
    path = settings.alerts_log_path
    return parse_alerts_log(path.read_text(encoding="utf-8")) if path.exists() else []
