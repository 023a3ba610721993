"""Alerts: email and ``alerts.log`` for failed, slow, stuck and recovered runs.

``messages`` says what an alert says, ``history`` remembers what was alerted,
``delivery`` mails and logs it, ``policy`` (``Alerts``) decides what is mailed when.
"""

from breezeway_daemon.alerts.delivery import LoggedAlert, format_record, parse_alerts_log
from breezeway_daemon.alerts.kinds import AlertKind, MailStatus
from breezeway_daemon.alerts.policy import Alerts, report_batch

__all__ = [
    "AlertKind",
    "Alerts",
    "LoggedAlert",
    "MailStatus",
    "format_record",
    "parse_alerts_log",
    "report_batch",
]
