"""Per-credential pacing: a rate limit, a cap on requests in flight, shared 429 waits.

Everything that uses one credential shares one ``Pacer``, so the API's limit
(200 requests per rolling minute per credential) is respected however many
runs use that credential at once.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog

log = structlog.get_logger(__name__)

# A quarter second more than the API's minute absorbs a difference between our
# clock's rate and the server's.
WINDOW_S = 60.25
# Background requests (task details) leave this share of the limit to listings, and look
# again at this interval while they wait.
BACKGROUND_RESERVE = 0.2
BACKGROUND_POLL_S = 0.05


class Pacer:
    """Admits requests for one credential.

    - At most ``requests_per_minute`` requests in any rolling window of
      ``window_s`` (default: the API's minute plus a margin), as the server
      counts them: a request reaches the server at some moment between its start
      and its answer, so a request holds its place in the window from its start
      until ``window_s`` after its answer. However late a request arrives, the
      server never sees more than the limit in one window. Tests shorten the
      window to see the limit hold within seconds.
    - At most ``max_in_flight`` requests are outstanding at once.
    - After a 429, ``block_until`` holds every request of the credential until
      the API's reset time; the wait is shared, never stacked per request.
    """

    def __init__(
        self, requests_per_minute: float | None, max_in_flight: int, *, window_s: float = WINDOW_S
    ) -> None:
        # Below one request per window nothing could ever start: allow one.
        self.limit = max(1, int(requests_per_minute)) if requests_per_minute else None
        self.window_s = window_s
        self._ended: list[float] = []  # a min-heap of when counted requests got their answer
        self._open = 0  # counted requests still waiting for their answer
        self._answered = asyncio.Event()
        self.max_in_flight = max_in_flight
        self._slots = asyncio.Semaphore(max_in_flight)
        self._admit = asyncio.Lock()
        self._blocked_until = 0.0
        self._foreground_waiting = 0
        self.waited_s = 0.0

    def reconfigure(self, requests_per_minute: float | None, max_in_flight: int) -> None:
        """New limits from a reloaded configuration; what was counted stays counted.

        Requests already in flight keep their places under the old in-flight cap.
        """
        self.limit = max(1, int(requests_per_minute)) if requests_per_minute else None
        if max_in_flight != self.max_in_flight:
            self.max_in_flight = max_in_flight
            self._slots = asyncio.Semaphore(max_in_flight)

    @property
    def blocked_for(self) -> float:
        """Seconds until a 429 wait ends (0 when none is in force)."""
        return max(0.0, self._blocked_until - time.monotonic())

    def block_for(self, seconds: float) -> None:
        """Hold every request of this credential for ``seconds`` (a 429's reset)."""
        until = time.monotonic() + max(0.0, seconds)
        if until > self._blocked_until:
            self._blocked_until = until
            log.warning("api_rate_limited", wait_s=round(seconds, 1))

    @asynccontextmanager
    async def slot(self, background: bool = False) -> AsyncIterator[None]:
        """Wait for a place under every limit, then hold it for one request.

        ``background`` (the task details): first wait until no other request is waiting
        and the window has ``BACKGROUND_RESERVE`` of the limit free, so that background
        requests never take a place a listing waits for, and a listing that starts
        finds room at once."""
        waiting = not background
        if background:
            await self._background_turn()
        else:
            self._foreground_waiting += 1
        try:
            async with self._slots:
                counted = await self._wait_turn()
                if waiting:
                    self._foreground_waiting -= 1
                    waiting = False
                try:
                    yield
                finally:
                    if counted:
                        self._open -= 1
                        heapq.heappush(self._ended, time.monotonic())
                        self._answered.set()
        finally:
            if waiting:
                self._foreground_waiting -= 1

    async def _background_turn(self) -> None:
        """Wait until a background request takes nothing a listing request could use: none
        is waiting, a place in flight is free (taken at once, no queueing ahead of a later
        listing request), the window has room beyond the reserve, and no 429 wait holds."""
        while True:
            now = time.monotonic()
            wait = self._blocked_until - now
            if self._foreground_waiting or self._slots.locked():
                wait = max(wait, BACKGROUND_POLL_S)
            if self.limit is not None:
                ended = self._ended
                while ended and ended[0] + self.window_s <= now:
                    heapq.heappop(ended)
                if self._open + len(ended) >= self.limit * (1 - BACKGROUND_RESERVE):
                    wait = max(wait, ended[0] + self.window_s - now if ended else 0.0)
                    wait = wait or BACKGROUND_POLL_S  # all still out: look again shortly
            if wait <= 0:
                return
            await asyncio.sleep(min(wait, BACKGROUND_POLL_S))

    async def _wait_turn(self) -> bool:
        """Wait for this request's turn; True when it counts against the rate limit."""
        # One admitter at a time keeps the waits fair (FIFO).
        async with self._admit:
            while True:
                now = time.monotonic()
                wait = self._blocked_until - now
                if self.limit is not None:
                    ended = self._ended
                    while ended and ended[0] + self.window_s <= now:
                        heapq.heappop(ended)
                    if self._open + len(ended) >= self.limit:
                        if not ended:
                            # Every request of the window is still out: wait for an answer.
                            self._answered.clear()
                            await self._answered.wait()
                            continue
                        wait = max(wait, ended[0] + self.window_s - now)
                if wait <= 0:
                    if self.limit is None:
                        return False
                    self._open += 1
                    return True
                self.waited_s += wait
                await asyncio.sleep(wait)
