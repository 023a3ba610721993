"""Per-credential pacing: a rate limit, a cap on requests in flight, shared 429 waits.

Everything that uses one credential shares one ``Pacer``, so the API's limit
(200 requests per rolling minute per credential) is respected however many
runs use that credential at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog

log = structlog.get_logger(__name__)

# A quarter second more than the API's minute absorbs network jitter between our
# clock (request start) and the server's (request arrival).
WINDOW_S = 60.25


class Pacer:
    """Admits requests for one credential.

    - At most ``requests_per_minute`` requests start in any rolling 60-second
      window (a sliding log of start times, so the guarantee is exact).
    - At most ``max_in_flight`` requests are outstanding at once.
    - After a 429, ``block_until`` holds every request of the credential until
      the API's reset time; the wait is shared, never stacked per request.
    """

    def __init__(self, requests_per_minute: float | None, max_in_flight: int) -> None:
        self.limit = int(requests_per_minute) if requests_per_minute else None
        self._starts: deque[float] = deque()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._admit = asyncio.Lock()
        self._blocked_until = 0.0
        self.waited_s = 0.0

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
    async def slot(self) -> AsyncIterator[None]:
        """Wait for a place under every limit, then hold it for one request."""
        async with self._slots:
            await self._wait_turn()
            yield

    async def _wait_turn(self) -> None:
        # One admitter at a time keeps the log ordered and the waits fair (FIFO).
        async with self._admit:
            while True:
                now = time.monotonic()
                wait = self._blocked_until - now
                if self.limit is not None:
                    while self._starts and now - self._starts[0] >= WINDOW_S:
                        self._starts.popleft()
                    if len(self._starts) >= self.limit:
                        wait = max(wait, self._starts[0] + WINDOW_S - now)
                if wait <= 0:
                    if self.limit is not None:
                        self._starts.append(now)
                    return
                self.waited_s += wait
                await asyncio.sleep(wait)
