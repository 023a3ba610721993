"""Request counters of the simulator, for tests and benchmarks: ``sim.stats``.

(``Stats``: per-client ``ClientStats`` and the window query.)
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ClientStats", "Stats"]


@dataclass
class ClientStats:
    """Counters of one client credential."""

    data_requests: int = 0
    auth_requests: int = 0
    logins: int = 0
    refreshes: int = 0
    rate_limited: int = 0
    auth_rate_limited: int = 0
    server_errors: int = 0
    unauthorized: int = 0
    paths: Counter[str] = field(default_factory=Counter)
    request_times: list[float] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "data_requests": self.data_requests,
            "auth_requests": self.auth_requests,
            "logins": self.logins,
            "refreshes": self.refreshes,
            "rate_limited": self.rate_limited,
            "auth_rate_limited": self.auth_rate_limited,
            "server_errors": self.server_errors,
            "unauthorized": self.unauthorized,
            "paths": dict(self.paths),
            "max_requests_in_60s": max_in_window(self.request_times, 60.0),
        }


def max_in_window(times: list[float], window_s: float) -> int:
    """The most entries of the sorted ``times`` inside any half-open window of ``window_s``."""
    best = 0
    for i, start in enumerate(times):
        best = max(best, bisect_right(times, start + window_s - 1e-9) - i)
    return best


class Stats:
    """Counters per client credential.

    Per client_id (``sim.stats.client("sim-client-1")`` or ``sim.stats["sim-client-1"]``) a
    ``ClientStats`` with:

    ``data_requests``    data requests that carried a token of this client (any answer)
    ``auth_requests``    login and refresh attempts (any answer)
    ``logins``           successful logins (a token pair issued by ``POST /public/auth/v1/``)
    ``refreshes``        successful refreshes
    ``rate_limited``     429 answers to data requests (limit and bursts); ``auth_rate_limited`` likewise
    ``server_errors``    injected 5xx answers; ``unauthorized`` 401s to requests naming this client
    ``paths``            Counter of data request paths
    ``request_times``    real monotonic times of the data requests
    ``events``           list of ``(monotonic time, "login" | "refresh")``

    ``sim.stats.max_requests_in_window(client_id, window_s=60)`` is the largest number of data
    requests of that client within any window of ``window_s`` seconds. ``unauthorized_anonymous``
    counts 401s whose token names no client. ``sim.stats.reset()`` zeroes everything.
    """

    def __init__(self) -> None:
        self.clients: dict[str, ClientStats] = {}
        self.unauthorized_anonymous = 0

    def client(self, client_id: str) -> ClientStats:
        found = self.clients.get(client_id)
        if found is None:
            found = self.clients[client_id] = ClientStats()
        return found

    __getitem__ = client

    def max_requests_in_window(self, client_id: str, window_s: float = 60.0) -> int:
        """The most data requests of ``client_id`` within any ``window_s`` seconds."""
        return max_in_window(self.client(client_id).request_times, window_s)

    def reset(self) -> None:
        self.clients.clear()
        self.unauthorized_anonymous = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "clients": {cid: cs.as_json() for cid, cs in sorted(self.clients.items())},
            "unauthorized_anonymous": self.unauthorized_anonymous,
        }
