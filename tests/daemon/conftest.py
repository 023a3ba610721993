"""Fixtures of the daemon process tests: an sd_notify socket and daemons on ``sim_env``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from support.daemon import DaemonEnv, DaemonProcess, NotifySocket
from support.simenv import SimEnv


@pytest.fixture
async def notify_socket(tmp_path: Path) -> AsyncIterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


@pytest.fixture
async def daemon_factory(
    sim_env: SimEnv, notify_socket: NotifySocket, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[DaemonProcess]]]:
    """``await daemon_factory(extra_env=None, **settings)``: ``serve`` on ``sim_env`` (the
    env file rewritten when settings are given); each daemon is killed at the end of the test."""
    daemons = DaemonEnv(
        sim_env.sim, sim_env.server, sim_env.settings, notify_socket, tmp_path / "breezeway.env"
    )
    yield daemons.spawn
    await daemons.close()
