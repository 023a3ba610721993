"""Per-credential pacing: a rate limit, a cap on requests in flight, shared 429 waits.

Everything that uses one credential shares one ``Pacer``, so the API's limit
(200 requests per rolling minute per credential) is respected however many
runs use that credential at once. With a ``CredentialBudget`` (``api/budget.py``)
it is also respected across processes and restarts: requests are reserved in the
database a few at a time, and other processes' reservations count too.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog

from breezeway_daemon.api.budget import HOLD_S, CredentialBudget

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
    - With a ``budget``, a request also needs a place in a reservation of the
      database, and the other processes' reservations count against the limit
      until they leave the window.
    """

    def __init__(
        self,
        requests_per_minute: float | None,
        max_in_flight: int,
        *,
        window_s: float = WINDOW_S,
        budget: CredentialBudget | None = None,
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
        self.budget = budget
        self._others: list[tuple[float, int]] = []  # a min-heap of (stops counting, requests)
        self._granted = 0  # requests left in this pacer's latest reservation
        self._granted_until = 0.0

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
                    ended, others = self._ended, self._others
                    while ended and ended[0] + self.window_s <= now:
                        heapq.heappop(ended)
                    while others and others[0][0] <= now:
                        heapq.heappop(others)
                    used = self._open + len(ended) + sum(n for _, n in others)
                    if used >= self.limit:
                        if not ended and not others:
                            # Every request of the window is still out: wait for an answer.
                            self._answered.clear()
                            await self._answered.wait()
                            continue
                        frees = [t + self.window_s for t in ended[:1]] + [t for t, _ in others[:1]]
                        wait = max(wait, min(frees) - now)
                    elif wait <= 0 and self.budget is not None and not self._has_grant(now):
                        await self._reserve(self.limit)
                        continue
                if wait <= 0:
                    if self.limit is None:
                        return False
                    self._open += 1
                    if self.budget is not None:
                        self._granted -= 1
                    return True
                self.waited_s += wait
                await asyncio.sleep(wait)

    def _has_grant(self, now: float) -> bool:
        return self._granted > 0 and now < self._granted_until

    async def _reserve(self, limit: int) -> None:
        """Reserve the next few requests in the database; learn the others' reservations."""
        assert self.budget is not None
        own = self._open + len(self._ended)
        wanted = CredentialBudget.chunk(limit, self.window_s)
        unused = max(self._granted, 0)
        reservation = await self.budget.reserve(wanted, limit, own, self.window_s, unused)
        self._others = reservation.others
        heapq.heapify(self._others)
        self._granted = reservation.granted
        self._granted_until = time.monotonic() + HOLD_S
        if not reservation.granted and own + sum(n for _, n in self._others) < limit:
            # Refused while this process sees room (a reservation being written
            # meanwhile): ask again shortly, not in a tight loop.
            await asyncio.sleep(0.2)
