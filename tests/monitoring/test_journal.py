"""journald's native protocol, against a real Unix datagram socket standing in for the journal."""

from __future__ import annotations

import array
import asyncio
import io
import os
import signal
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import structlog

from breezeway_daemon import journal
from breezeway_daemon.logs import configure_logging

from support.daemon import NotifySocket
from support.monitoring import ServedDaemon


def parse_entry(data: bytes) -> dict[str, str]:
    """A native-protocol entry back into its fields (both encodings of a value)."""
    fields: dict[str, str] = {}
    at = 0
    while at < len(data):
        end = data.index(b"\n", at)
        line = data[at:end]
        if b"=" in line:
            name, value = line.split(b"=", 1)
            at = end + 1
        else:
            name = line
            (size,) = struct.unpack("<Q", data[end + 1 : end + 9])
            value = data[end + 9 : end + 9 + size]
            assert data[end + 9 + size : end + 10 + size] == b"\n"
            at = end + 10 + size
        assert name.decode() not in fields, name
        fields[name.decode()] = value.decode()
    return fields


def receive(sock: socket.socket) -> dict[str, str]:
    """One entry: a datagram, or the memfd passed in one (read and closed here)."""
    data, ancillary, _flags, _ = sock.recvmsg(1 << 20, socket.CMSG_SPACE(4 * 4))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            (fd,) = array.array("i", payload[:4])
            try:
                os.lseek(fd, 0, os.SEEK_SET)
                with os.fdopen(os.dup(fd), "rb") as memfd:
                    data = memfd.read()
            finally:
                os.close(fd)
    return parse_entry(data)


@pytest.fixture
def journal_socket(tmp_path: Path) -> Iterator[tuple[Path, socket.socket]]:
    path = tmp_path / "journal.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    yield path, sock
    sock.close()


def test_an_entry_carries_the_fields_priority_and_a_readable_message(journal_socket) -> None:
    path, sock = journal_socket
    event = {"event": "run_failed", "region": "nashville", "entity": "tasks", "run_id": 42,
             "error": "timed out after 5 attempts", "level": "error",
             "timestamp": "2026-01-01T00:00:00Z"}  # fmt: skip
    writer = journal.JournalWriter(path)
    writer.send(journal.entry(event, 3))
    fields = receive(sock)
    assert fields["PRIORITY"] == "3"
    assert fields["REGION"] == "nashville" and fields["ENTITY"] == "tasks"
    assert fields["RUN_ID"] == "42" and fields["EVENT"] == "run_failed"
    assert fields["SYSLOG_IDENTIFIER"] == "breezeway-daemon"
    assert fields["MESSAGE"] == (
        'run_failed region=nashville entity=tasks run_id=42 error="timed out after 5 attempts"'
    )
    assert orjson.loads(fields["EVENT_JSON"]) == event
    writer.close()


def test_multi_line_values_are_length_prefixed_and_arrive_whole(journal_socket) -> None:
    path, sock = journal_socket
    traceback = 'Traceback (most recent call last):\n  File "x", line 1\nValueError: no\n'
    event = {"event": "alert_failed", "region": "austin", "exception": traceback,
             "error": "line one\nline two = still two"}  # fmt: skip
    journal.JournalWriter(path).send(journal.entry(event, 3))
    fields = receive(sock)
    assert fields["MESSAGE"].startswith("alert_failed region=austin exception=")
    assert "\n" not in fields["REGION"]
    event_json = orjson.loads(fields["EVENT_JSON"])
    assert event_json["exception"] == traceback and event_json["error"].count("\n") == 1
    # A value with a newline is sent length-prefixed: "NAME\n" + 8 bytes + value + "\n".
    raw = journal.encode_field("MESSAGE", "a\nb")
    assert raw == b"MESSAGE\n" + (3).to_bytes(8, "little") + b"a\nb\n"


def test_an_entry_too_large_for_a_datagram_goes_in_a_sealed_memfd(journal_socket) -> None:
    path, sock = journal_socket
    huge = "x" * 600_000  # above the default datagram limit (net.core.wmem_default)
    event = {"event": "listing_shifted", "region": "mammoth", "detail": huge}
    journal.JournalWriter(path).send(journal.entry(event, 4))
    fields = receive(sock)
    assert fields["REGION"] == "mammoth" and fields["PRIORITY"] == "4"
    assert orjson.loads(fields["EVENT_JSON"])["detail"] == huge


# --- the logging set-up ---------------------------------------------------------------------
class StdoutStandIn(io.StringIO):
    """A text stream with a real file descriptor (a file), so that JOURNAL_STREAM can name it."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.file = path.open("w+")

    def fileno(self) -> int:
        return self.file.fileno()

    def identity(self) -> str:
        st = os.fstat(self.file.fileno())
        return f"{st.st_dev}:{st.st_ino}"


@pytest.fixture
def on_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, saved_logging: None
) -> Callable[[Path], StdoutStandIn]:
    """``on_journal(socket_path)``: logging configured as under systemd, on a stand-in stdout."""

    def configure(socket_path: Path) -> StdoutStandIn:
        stream = StdoutStandIn(tmp_path / "stdout")
        monkeypatch.setenv("JOURNAL_STREAM", stream.identity())
        monkeypatch.setenv(journal.SOCKET_ENV, str(socket_path))
        configure_logging("info", stream=stream, force_json=True)
        return stream

    return configure


def test_under_systemd_events_go_to_the_journal_with_their_level(
    journal_socket, on_journal
) -> None:
    path, sock = journal_socket
    stream = on_journal(path)
    log = structlog.get_logger("test")
    with structlog.contextvars.bound_contextvars(region="smoky", entity="people", run_id=7):
        log.warning("run_slow", duration_s=700.5, client_secret="not-for-the-journal")
    log.info("daemon_ready")
    warning, info = receive(sock), receive(sock)
    assert warning["PRIORITY"] == "4" and warning["EVENT"] == "run_slow"
    assert (warning["REGION"], warning["ENTITY"], warning["RUN_ID"]) == ("smoky", "people", "7")
    assert "not-for-the-journal" not in warning["MESSAGE"] + warning["EVENT_JSON"]
    assert "client_secret=***" in warning["MESSAGE"]
    assert info["PRIORITY"] == "6" and info["EVENT"] == "daemon_ready" and "REGION" not in info
    assert stream.getvalue() == ""  # nothing on stdout


def test_without_the_journal_socket_events_stay_json_lines_on_stdout(tmp_path, on_journal) -> None:
    stream = on_journal(tmp_path / "no-such.sock")
    structlog.get_logger("test").error("run_failed", region="sea_ranch")
    line = stream.getvalue().strip()
    assert line.startswith("<3>{")
    assert orjson.loads(line[3:])["region"] == "sea_ranch"


def test_an_event_the_journal_refuses_is_written_to_stdout(journal_socket, on_journal) -> None:
    path, sock = journal_socket
    stream = on_journal(path)
    sock.close()
    path.unlink()  # journald restarting: nobody listens
    structlog.get_logger("test").warning("token_renewal_failed", region="hilton_head")
    line = stream.getvalue().strip()
    assert line.startswith("<4>{") and '"region":"hilton_head"' in line


def test_stdout_that_is_not_the_journals_stream_is_not_taken_for_it(tmp_path: Path) -> None:
    stream = StdoutStandIn(tmp_path / "stdout")
    assert journal.stream_is_journal(stream, {"JOURNAL_STREAM": stream.identity()})
    assert not journal.stream_is_journal(stream, {"JOURNAL_STREAM": "1:2"})
    assert not journal.stream_is_journal(stream, {"JOURNAL_STREAM": "nonsense"})
    assert not journal.stream_is_journal(io.StringIO(), {"JOURNAL_STREAM": stream.identity()})


# --- the daemon process -------------------------------------------------------------------
class JournalStandIn(NotifySocket):
    """A datagram socket the daemon sends its journal entries to; keeps them all."""

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 1 << 20)
            async with self._arrived:
                self.messages.append((loop.time(), parse_entry(data)))
                self._arrived.notify_all()

    async def entry(self, **fields: str) -> dict[str, str]:
        """The first entry with ``fields``, once it has arrived."""
        index = await self.wait_for(lambda entry: all(entry.get(k) == v for k, v in fields.items()))
        return self.messages[index][1]


async def test_the_daemon_under_systemd_writes_fields_journalctl_can_filter_on(
    served_daemon, tmp_path: Path
) -> None:
    stand_in = JournalStandIn(tmp_path / "journal.sock")
    try:
        daemon: ServedDaemon = await served_daemon(
            secrets={"region_2": "wrong-secret-for-tests"}, journal_socket=stand_in.path,
            wait_ready=False, http_listen="",
        )  # fmt: skip
        await stand_in.entry(EVENT="daemon_ready", PRIORITY="6")
        daemon.signal(signal.SIGUSR1)
        await stand_in.entry(EVENT="batch_finished")
        # journalctl -u breezeway-daemon REGION=region_1 ENTITY=tasks
        done = await stand_in.entry(EVENT="run_succeeded", REGION="region_1", ENTITY="tasks")
        assert done["RUN_ID"].isdigit() and done["SYSLOG_IDENTIFIER"] == "breezeway-daemon"
        assert done["MESSAGE"].startswith("run_succeeded ")
        assert f"run_id={done['RUN_ID']}" in done["MESSAGE"]
        # journalctl -u breezeway-daemon REGION=region_2 -p warning
        failed = await stand_in.entry(EVENT="run_failed", REGION="region_2", PRIORITY="3")
        assert "region=region_2" in failed["MESSAGE"] and "error=" in failed["MESSAGE"]
        assert await daemon.stop() == 0
        await stand_in.entry(EVENT="daemon_stopped")
        assert daemon.events == []  # every event went to the journal, none to stdout
    finally:
        stand_in.close()


async def test_the_daemon_falls_back_to_json_lines_when_the_journal_socket_is_absent(
    served_daemon, tmp_path: Path
) -> None:
    daemon: ServedDaemon = await served_daemon(journal_socket=tmp_path / "absent.sock")
    ready = daemon.events[await daemon.wait_event("daemon_ready")]
    assert ready["_priority"] == 6  # "<6>{...}": journald reads the level from the prefix
    assert await daemon.stop() == 0
