"""A real SMTP server for the alert tests: aiosmtpd on 127.0.0.1 that requires a password.

``SmtpServer`` runs in its own thread (start and stop it with ``with``) and keeps, in its
``Mailbox``, every message (raw and parsed), its envelope and every login attempted.
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Mailbox:
    """What the SMTP server received: parsed messages, raw bytes, envelopes and logins."""

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

    def texts(self) -> list[str]:
        """Every message as received, decoded."""
        with self.lock:
            return [raw.decode(errors="replace") for raw in self.raw]

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


class SmtpServer:
    """aiosmtpd in its own thread on a free port; AUTH (without TLS) as ``user``/``password``."""

    def __init__(self, user: str, password: str) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.mailbox = mailbox = Mailbox()

        def authenticate(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> Any:
            login = data.login.decode() if isinstance(data.login, bytes) else str(data.login)
            secret = data.password.decode() if isinstance(data.password, bytes) else data.password
            with mailbox.lock:
                mailbox.logins.append((login, secret))
            return AuthResult(success=login == user and secret == password)

        self.port = free_port()
        self.controller = Controller(_Handler(mailbox), hostname="127.0.0.1", port=self.port,
                                     authenticator=authenticate, auth_require_tls=False)  # fmt: skip

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def messages(self) -> list[str]:
        """Every message as received, decoded."""
        return self.mailbox.texts()
