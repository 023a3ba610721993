"""An API client (``BreezewayApi``) on a served simulator, recording every request it sends;
and tokens planted straight into ``api_tokens``, issued by the simulator's own authority (so a
test spends none of the auth endpoints' 1-per-minute allowance before it starts).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from breezeway_daemon.api.client import BreezewayApi
from breezeway_daemon.api.tokens import credential_fingerprint, jwt_expiry
from breezeway_daemon.config import Settings
from breezeway_sim import Simulator, SimulatorServer
from breezeway_sim.auth import decode_jwt
from breezeway_sim.stats import ClientStats

from support.simenv import regions_for


@dataclass
class Sent:
    """One request the client put on the wire (seen by an httpx event hook)."""

    method: str
    path: str
    params: dict[str, str]
    token: str | None
    at: float


@dataclass
class ApiEnv:
    """A simulator served on 127.0.0.1, settings pointing at it, and an API client."""

    sim: Simulator
    server: SimulatorServer
    settings: Settings
    api: BreezewayApi
    pool: asyncpg.Pool
    sent: list[Sent] = field(default_factory=list)

    def company(self, region: str) -> Any:
        company_id = self.settings.regions[region].company_id
        return self.sim.company(company_id)  # type: ignore[arg-type]

    def stats(self, region: str) -> ClientStats:
        """The simulator's counters for the region's credential."""
        return self.sim.stats[self.company(region).client_id]

    def token_owner(self, token: str) -> str:
        """The client_id a token was issued to (its ``sub`` claim, checked by the simulator)."""
        return str(decode_jwt(token, self.sim.tokens._key)["sub"])

    def data_requests(self) -> list[Sent]:
        return [s for s in self.sent if s.path.startswith("/public/inventory/")]

    def auth_requests(self) -> list[Sent]:
        return [s for s in self.sent if s.path.startswith("/public/auth/")]

    async def plant_token(
        self,
        region: str,
        *,
        access_ttl_s: float = 86400,
        refresh_ttl_s: float = 30 * 86400,
        stored_expiry: datetime | None = None,
    ) -> dict[str, str]:
        """Store a token pair for ``region`` as if it had logged in (generation 1).

        ``stored_expiry`` overrides what the row says of the access token's expiry (the
        token itself keeps its ``exp``): a clock-skew or server-side-expiry situation.
        """
        company = self.company(region)
        pair = self.sim.tokens.issue(company, access_ttl_s, refresh_ttl_s)
        expires = stored_expiry or jwt_expiry(pair["access_token"], DAY)
        await self.pool.execute(
            """
            INSERT INTO breezeway.api_tokens (region_code, access_token, refresh_token,
                token_expires_at, refresh_expires_at, last_refreshed_at, token_generation_count,
                credential_fingerprint)
            VALUES ($1, $2, $3, $4, $5, now(), 1, $6)
            ON CONFLICT (region_code) DO UPDATE SET access_token = $2, refresh_token = $3,
                token_expires_at = $4, refresh_expires_at = $5, last_refreshed_at = now(),
                token_generation_count = 1, credential_fingerprint = $6, last_error = NULL
            """,
            region,
            pair["access_token"],
            pair["refresh_token"],
            expires,
            jwt_expiry(pair["refresh_token"], DAY),
            credential_fingerprint(self.settings.regions[region]),
        )
        return pair

    async def token_row(self, region: str) -> asyncpg.Record:
        row = await self.pool.fetchrow(
            "SELECT * FROM breezeway.api_tokens WHERE region_code = $1", region
        )
        assert row is not None
        return row


DAY = timedelta(days=1)
EnvFactory = Callable[..., Awaitable[ApiEnv]]


def record_requests(http: httpx.AsyncClient, sent: list[Sent], clock: Callable[[], float]) -> None:
    """Append every request ``http`` sends to ``sent``."""

    async def on_request(request: httpx.Request) -> None:
        auth = request.headers.get("authorization", "")
        sent.append(
            Sent(
                request.method,
                request.url.path,
                dict(request.url.params),
                auth.removeprefix("JWT ") if auth else None,
                clock(),
            )
        )

    http.event_hooks["request"].append(on_request)


def default_regions(sim_companies: int = 2) -> dict[str, dict[str, object]]:
    """Region settings for a fresh ``Simulator(companies=sim_companies)``."""
    return regions_for(Simulator(companies=sim_companies))


def utcnow() -> datetime:
    return datetime.now(UTC)
