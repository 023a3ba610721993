"""The API's minute shared through the database, across processes and restarts.

(``CredentialBudget``: reservations in ``api_request_reservations`` that every process counts.)
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass, field

import asyncpg
import structlog

from breezeway_daemon.db.runs import HOST, PID
from breezeway_daemon.errors import DatabaseError, describe

log = structlog.get_logger(__name__)

HOLD_S = 2.0
TRAVEL_S = 5.0
# At most this many requests per reservation: what a reservation does not use still counts
# for others until it is given back, so a high limit must not reserve thousands at once.
MAX_CHUNK = 20
BUDGET_LOCK_NAMESPACE = 0x627564  # "bud": the advisory-lock class of reservations


@dataclass
class Reservation:
    """What a reservation gave: requests granted now, and the others' live reservations
    as (monotonic time they stop counting, requests)."""

    granted: int
    others: list[tuple[float, int]] = field(default_factory=list)


class CredentialBudget:
    """One credential's reservations in ``api_request_reservations``, for one pacer.

    A pacer (``api/pacing.py``) counts its own process's requests exactly, but a daemon restarted
    after a kill, or a ``run`` command started beside the daemon, would not know what the credential
    already spent. So before sending requests a pacer reserves a few at a time
    (``CredentialBudget.reserve``): one row of ``api_request_reservations``, committed before any of
    its requests is sent, so a process killed right after still has them counted. A reservation's
    requests are started within ``HOLD_S``; the row counts against the credential's rolling minute
    until then plus ``TRAVEL_S`` (a request's way to the server) plus the window. Each reservation
    reads the live reservations of every other owner (other processes, a killed predecessor): the
    pacer counts them as it counts its own. The unused part of a reservation is given back with the
    next one.
    """

    def __init__(self, pool: asyncpg.Pool, credential: str) -> None:
        self.pool = pool
        self.credential = credential
        self.owner = f"{HOST}:{PID}:{secrets.token_hex(4)}"
        self._last: int | None = None  # the id of this owner's latest reservation
        self._failing = False

    @staticmethod
    def chunk(limit: int, window_s: float) -> int:
        """How many requests one reservation asks for: about ``HOLD_S`` of the limit, at most
        ``MAX_CHUNK``."""
        return max(1, min(MAX_CHUNK, math.ceil(limit * HOLD_S / window_s)))

    async def reserve(
        self, wanted: int, limit: int, own: int, window_s: float, unused: int
    ) -> Reservation:
        """Up to ``wanted`` requests, within ``limit`` minus ``own`` (this pacer's requests in
        the window) minus the others' reservations; ``unused``: what the previous
        reservation did not use, given back. When the database cannot be reached, pacing
        goes on in this process alone (``wanted`` granted, no others)."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                return await self._reserve(conn, wanted, limit, own, window_s, unused)
        except (DatabaseError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as err:
            if not self._failing:
                log.warning("api_budget_unavailable", error=describe(err))
            self._failing = True
            return Reservation(wanted)

    async def _reserve(
        self,
        conn: asyncpg.Connection,
        wanted: int,
        limit: int,
        own: int,
        window_s: float,
        unused: int,
    ) -> Reservation:
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))", BUDGET_LOCK_NAMESPACE, self.credential
        )
        if self._last is not None and unused > 0:
            await conn.execute(
                "UPDATE breezeway.api_request_reservations "
                "SET requests = greatest(requests - $2, 0) WHERE id = $1",
                self._last,
                unused,
            )
        await conn.execute(
            "DELETE FROM breezeway.api_request_reservations "
            "WHERE credential = $1 AND counts_until < clock_timestamp() - interval '1 minute'",
            self.credential,
        )
        rows = await conn.fetch(
            "SELECT extract(epoch FROM counts_until - clock_timestamp())::float8 AS left_s, "
            "requests FROM breezeway.api_request_reservations "
            "WHERE credential = $1 AND owner <> $2 AND counts_until > clock_timestamp() "
            "AND requests > 0",
            self.credential,
            self.owner,
        )
        now = time.monotonic()
        others = [(now + row["left_s"], row["requests"]) for row in rows]
        granted = max(0, min(wanted, limit - own - sum(n for _, n in others)))
        if granted:
            self._last = await conn.fetchval(
                "INSERT INTO breezeway.api_request_reservations "
                "(credential, owner, counts_until, requests) "
                "VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3), $4) RETURNING id",
                self.credential,
                self.owner,
                HOLD_S + TRAVEL_S + window_s,
                granted,
            )
        if self._failing:
            log.info("api_budget_available")
            self._failing = False
        return Reservation(granted, others)
