"""journald's native protocol: log events as structured journal entries.

(``writer_for`` chooses it; ``JournalLogger`` sends the entries).
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import os
import socket
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

import orjson

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
SOCKET_ENV = "BREEZEWAY_JOURNAL_SOCKET"
IDENTIFIER = "breezeway-daemon"
# Event keys that become journal fields of their own (beside MESSAGE and PRIORITY).
FIELD_KEYS = {"event": "EVENT", "region": "REGION", "entity": "ENTITY", "run_id": "RUN_ID",
              "kind": "KIND"}  # fmt: skip
NOT_IN_MESSAGE = {"event", "level", "timestamp"}


def journal_socket() -> Path:
    return Path(os.environ.get(SOCKET_ENV) or JOURNAL_SOCKET)


def stream_is_journal(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``stream`` is connected to the journal (``JOURNAL_STREAM`` is its dev:inode)."""
    environ = os.environ if environ is None else environ
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (OSError, ValueError, AttributeError):
        # io.UnsupportedOperation (no file descriptor) is an OSError and a ValueError.
        return False


def encode_field(name: str, value: str) -> bytes:
    """``NAME=value\\n``; a value with a newline as ``NAME\\n<64-bit LE length><value>\\n``."""
    data = value.encode("utf-8", errors="replace")
    if b"\n" in data:
        return name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return name.encode() + b"=" + data + b"\n"


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value, default=str).decode()


def _shown(value: Any) -> str:
    """A value in MESSAGE: bare when it is one word, else quoted JSON."""
    if isinstance(value, str) and value and not any(c in value for c in ' "=\n\t'):
        return value
    if isinstance(value, bool | int | float) or value is None:
        return _text(value)
    return orjson.dumps(value, default=str).decode()


def message(event: Mapping[str, Any]) -> str:
    """``run_failed region=nashville entity=tasks error="..."``: the event, readable."""
    parts = [str(event.get("event", ""))]
    parts += [f"{key}={_shown(value)}" for key, value in event.items() if key not in NOT_IN_MESSAGE]
    return " ".join(parts)


def entry(event: Mapping[str, Any], priority: int) -> bytes:
    """The journal entry of one log event, encoded for the native protocol."""
    fields = [
        ("MESSAGE", message(event)),
        ("PRIORITY", str(priority)),
        ("SYSLOG_IDENTIFIER", IDENTIFIER),
    ]
    fields += [(name, _text(event[key])) for key, name in FIELD_KEYS.items() if key in event]
    fields.append(("EVENT_JSON", orjson.dumps(dict(event), default=str).decode()))
    return b"".join(encode_field(name, value) for name, value in fields if value is not None)


class JournalWriter:
    """Sends entries to the journal's datagram socket.

    Under systemd, when stdout is the journal (``JOURNAL_STREAM`` names stdout's device and inode,
    see systemd.exec(5)) and the journal's socket exists, each event is sent to
    ``/run/systemd/journal/socket`` as one datagram of fields (systemd's "Native Journal Protocol"):
    ``MESSAGE`` (readable: the event and its values), ``PRIORITY`` (syslog level), ``EVENT``,
    ``REGION``, ``ENTITY``, ``RUN_ID`` (when the event has them), ``SYSLOG_IDENTIFIER`` and
    ``EVENT_JSON`` (the whole event, as the JSON lines carry it). So ``journalctl -u
    breezeway-daemon REGION=nashville -p warning`` finds a region's warnings. An entry too large for
    a datagram goes in a sealed memfd whose descriptor is passed instead. A send that fails
    (journald restarting) writes the event to stdout, which is the journal's stream: nothing is
    lost. No C library or compiler is needed.

    ``BREEZEWAY_JOURNAL_SOCKET`` names another socket (tests; containers that mount it elsewhere).
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = str(path or journal_socket())
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def send(self, data: bytes) -> None:
        """One entry; OSError when the journal did not take it."""
        try:
            self._sock.sendto(data, self.path)
        except OSError as err:
            if err.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                raise
            self._send_memfd(data)

    def _send_memfd(self, data: bytes) -> None:
        """Too large for a datagram: the entry in a sealed memfd, its descriptor sent."""
        if not hasattr(os, "memfd_create"):  # not Linux: nothing to send it with
            raise OSError(errno.EMSGSIZE, "journal entry too large for a datagram")
        fd = os.memfd_create("journal-entry", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
            self._sock.sendmsg([], rights, 0, self.path)
        finally:
            os.close(fd)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


def writer_for(stream: TextIO) -> JournalWriter | None:
    """A writer when ``stream`` is the journal's and its socket exists; else None."""
    if not stream_is_journal(stream):
        return None
    path = journal_socket()
    if not path.is_socket():
        return None
    return JournalWriter(path)


class JournalLogger:
    """A structlog logger: each event (a dict from ``journal_fields``) to the journal,
    or to ``fallback`` as a ``<N>``-prefixed JSON line when the journal refuses it."""

    def __init__(self, writer: JournalWriter, fallback: TextIO) -> None:
        self.writer = writer
        self.fallback = fallback

    def msg(self, **event: Any) -> None:
        priority = event.pop("_priority", 6)
        try:
            self.writer.send(entry(event, priority))
        except OSError:
            line = f"<{priority}>" + orjson.dumps(event, default=str).decode()
            print(line, file=self.fallback, flush=True)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def logger_factory(writer: JournalWriter, fallback: TextIO) -> Callable[..., JournalLogger]:
    """structlog's ``logger_factory``: one ``JournalLogger`` for every bound logger."""
    logger = JournalLogger(writer, fallback)

    def factory(*_args: Any) -> JournalLogger:
        return logger

    return factory


def journal_fields(_logger: Any, _method: str, event_dict: Any) -> Any:
    """The last processor: hand the event to ``JournalLogger`` as keyword arguments."""
    return dict(event_dict)
