"""The vocabulary of alerts: their kinds, mail outcomes, and what one alert is about."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class AlertKind(StrEnum):
    """An alert's kind; with its region and entity, the key of the quiet period."""

    FAILURE = "failure"
    WARNING = "warning"
    RECOVERED = "recovered"
    STUCK = "stuck"
    TOKEN = "token"


# Alerts that a later success of the same pair recovers from.
FAILURE_KINDS = (AlertKind.FAILURE, AlertKind.STUCK)


class MailStatus(StrEnum):
    """What became of an alert's mail (``alert_history.mail_status``)."""

    SENT = "sent"
    QUIET = "quiet"  # the same alert was mailed within the quiet period
    FOLDED = "folded"  # waiting for its batch's digest
    OFF = "off"  # no SMTP configured
    FAILED = "failed"  # the mail server refused or could not be reached


AlertKey = tuple[AlertKind, str, str]


@dataclass
class AlertEntry:
    """What an alert is about: one pair (or region), one row of ``alert_history``."""

    kind: AlertKind
    region: str
    entity: str = ""  # '' for a whole region (token failures)
    run_id: int | None = None
    error_kind: str | None = None
    subject: str = ""  # the alert's subject for this pair alone
    row_id: int | None = None
    record: bool = True  # False: another alert already has this pair's row

    @property
    def key(self) -> AlertKey:
        return (self.kind, self.region, self.entity)
