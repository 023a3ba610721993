"""Rate limiters of the simulator, on real monotonic time."""

from __future__ import annotations

import time
from collections import deque
from datetime import UTC, datetime, timedelta

__all__ = ["AuthLimiter", "DataLimiter", "retry_after_text"]

WINDOW_S = 60.0


def retry_after_text(seconds: float) -> str:
    """Wall-clock UTC time ``seconds`` from now, ``YYYY-MM-DDTHH:MM:SS`` without a zone, rounded up.

    The API's ``retry_after`` value: wall-clock time, never simulated time (clients compare it
    with their own clock).
    """
    when = datetime.now(UTC) + timedelta(seconds=max(0.0, seconds))
    if when.microsecond:
        when = when.replace(microsecond=0) + timedelta(seconds=1)
    return when.replace(tzinfo=None).isoformat()


class DataLimiter:
    """At most ``limit`` accepted requests per client in any rolling ``WINDOW_S``.

    Per client, a rolling window of *accepted* requests; a request over the limit is refused
    and not counted, and learns when the oldest request leaves the window.
    """

    def __init__(self) -> None:
        self._accepted: dict[str, deque[float]] = {}

    def admit(self, client_id: str, limit: int | None) -> float | None:
        """None when admitted (and counted); else seconds until a request would be admitted."""
        now = time.monotonic()
        times = self._accepted.setdefault(client_id, deque())
        horizon = now - WINDOW_S
        while times and times[0] <= horizon:
            times.popleft()
        if limit is not None and len(times) >= limit:
            return times[len(times) - limit] + WINDOW_S - now
        times.append(now)
        return None

    def reset(self) -> None:
        self._accepted.clear()


class AuthLimiter:
    """At most ``limit`` auth attempts per client in any rolling ``WINDOW_S``; all attempts count.

    Per client, a rolling window of *all* attempts, refused ones included, so an early retry
    pushes the reset out (as the real auth endpoints do).
    """

    def __init__(self) -> None:
        self._attempts: dict[str, deque[float]] = {}

    def admit(self, client_id: str, limit: int | None) -> float | None:
        """None when admitted; else seconds until the client may try again."""
        now = time.monotonic()
        times = self._attempts.setdefault(client_id, deque())
        horizon = now - WINDOW_S
        while times and times[0] <= horizon:
            times.popleft()
        times.append(now)
        if limit is not None and len(times) > limit:
            return times[len(times) - limit] + WINDOW_S - now
        return None

    def reset(self) -> None:
        self._attempts.clear()
