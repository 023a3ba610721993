"""The daemon's HTTP listener (``BREEZEWAY_HTTP_LISTEN``, off by default).

``start_listener(daemon)`` starts it with ``/metrics`` and ``/healthz`` (and the
health probe behind them); other features add their routes with
``Listener.add_route``. uvicorn and starlette are imported only when the listener
is on. A reload cannot move it: a changed address waits for a restart (``daemon.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from breezeway_daemon.http.address import ListenAddress, parse_listen_address

if TYPE_CHECKING:
    from breezeway_daemon.http.listener import Listener

__all__ = ["ListenAddress", "ListenerError", "parse_listen_address", "start_listener",
           "stop_listener"]  # fmt: skip


class ListenerError(Exception):
    """The listener cannot start; the message names the setting."""


async def start_listener(daemon: Any) -> Listener | None:
    """The listener of ``daemon`` (its ``settings``, ``scheduler``, ``pool``, ``api``)
    serving ``/metrics`` and ``/healthz``; None when ``BREEZEWAY_HTTP_LISTEN`` is unset."""
    address = daemon.settings.http_listen
    if address is None:
        return None
    from breezeway_daemon import metrics
    from breezeway_daemon.health import Health
    from breezeway_daemon.http.listener import Listener
    from breezeway_daemon.http.routes import add_monitoring_routes

    health = Health(daemon)
    await health.start()
    listener = Listener(parse_listen_address(address))
    listener.stop_with(health.stop)
    listener.stop_with(_unwatch)
    metrics.watch(daemon, health)
    add_monitoring_routes(listener, health)
    try:
        await listener.start()
    except ListenerError:
        await listener.stop()
        raise
    return listener


async def stop_listener(listener: Listener | None) -> None:
    if listener is not None:
        await listener.stop()


async def _unwatch() -> None:
    from breezeway_daemon import metrics

    metrics.unwatch()
