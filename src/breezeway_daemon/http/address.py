"""``BREEZEWAY_HTTP_LISTEN``: where the daemon's HTTP listener binds.

Accepted spellings: ``PORT`` or ``:PORT`` (host 127.0.0.1), ``HOST:PORT``, ``[IPv6]:PORT``.
The default host is the loopback address: a reverse proxy or the local Prometheus
reaches the listener there, and nothing else does unless an operator says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_HOST = "127.0.0.1"
_BRACKETED = re.compile(r"\[([0-9A-Fa-f:.]+)\]:(\d+)")
_HOST_PORT = re.compile(r"([A-Za-z0-9.\-]*):(\d+)")


@dataclass(frozen=True)
class ListenAddress:
    """A host and a port (0: any free port, for tests)."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_listen_address(text: str) -> ListenAddress:
    """``"127.0.0.1:9464"`` -> ``ListenAddress("127.0.0.1", 9464)``; ValueError when invalid."""
    text = text.strip()
    if text.isdigit():
        host, port = DEFAULT_HOST, text
    elif match := _BRACKETED.fullmatch(text):
        host, port = match[1], match[2]
    elif match := _HOST_PORT.fullmatch(text):
        host, port = match[1] or DEFAULT_HOST, match[2]
    else:
        raise ValueError(f"{text[:80]!r} is not HOST:PORT, [IPv6]:PORT or PORT")
    number = int(port)
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number} is not between 0 and 65535")
    return ListenAddress(host, number)
