"""sd_notify without a dependency: datagrams to ``$NOTIFY_SOCKET``, abstract names too."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from breezeway_daemon.notify import Notifier, keep_watchdog_fed, watchdog_interval


def receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


def fields(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(65536).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


@pytest.fixture
def fs_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify.sock")
    sock = receiver(path)
    yield path, sock
    sock.close()


def test_sends_to_a_filesystem_socket(
    fs_socket: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, sock = fs_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    notifier = Notifier()
    assert notifier.enabled
    assert notifier.ready("next hourly 05:00")
    assert fields(sock) == {"READY": "1", "STATUS": "next hourly 05:00"}
    assert notifier.status("last: hourly batch, 12 runs, 0 failed")
    assert fields(sock) == {"STATUS": "last: hourly batch, 12 runs, 0 failed"}
    assert notifier.watchdog()
    assert fields(sock) == {"WATCHDOG": "1"}
    assert notifier.reloading()
    reloading = fields(sock)
    assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
    assert notifier.stopping()
    assert fields(sock) == {"STOPPING": "1"}


def test_sends_to_an_abstract_socket() -> None:
    name = f"breezeway-test-{os.getpid()}-{secrets.token_hex(4)}"
    sock = receiver("\0" + name)
    try:
        notifier = Notifier(f"@{name}")
        assert notifier.ready()
        assert fields(sock) == {"READY": "1"}
    finally:
        sock.close()


def test_nothing_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert notifier.ready() is False and notifier.watchdog() is False
    assert Notifier("").enabled is False


def test_a_missing_socket_is_reported_not_raised(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens.sock"))
    assert notifier.enabled and notifier.ready() is False


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("2000000", None, 1.0),
        ("120000000", "self", 60.0),
        ("2000000", "other", None),
        (None, None, None),
        ("soon", None, None),
    ],
    ids=["no-pid", "this-pid", "another-pid", "unset", "not-a-number"],
)
def test_watchdog_interval_is_half_of_watchdog_usec(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(
                name, {"self": str(os.getpid()), "other": str(os.getpid() + 1)}.get(value, value)
            )
    assert watchdog_interval() == expected


async def test_keep_watchdog_fed_pings_until_cancelled(
    fs_socket: tuple[str, socket.socket],
) -> None:
    path, sock = fs_socket
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    feeder = asyncio.create_task(keep_watchdog_fed(Notifier(path), 0.05))
    try:
        pings = [await asyncio.wait_for(loop.sock_recv(sock, 1024), 5) for _ in range(3)]
    finally:
        feeder.cancel()
    assert pings == [b"WATCHDOG=1"] * 3
