"""The simulator's auth endpoints: login and refresh, with the auth rate limit and the
injected auth failures."""

from __future__ import annotations

import asyncio
import time

import orjson
from starlette.requests import Request
from starlette.responses import Response

from .auth import TokenError
from .gate import Gate, bearer, error_response, json_response, rate_limited, token_echoed
from .query import ApiError


class AuthHandlers:
    """``POST /public/auth/v1/`` and ``POST /public/auth/v1/refresh``."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.sim = gate.sim

    async def login(self, request: Request) -> Response:
        sim = self.sim
        await self.gate.latency()
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return error_response(ApiError(400, "Bad Request", "body must be JSON"))
        if not isinstance(body, dict):
            return error_response(ApiError(400, "Bad Request", "body must be a JSON object"))
        client_id = body.get("client_id")
        secret = body.get("client_secret")
        if not isinstance(client_id, str):
            return Response(b"", 200)
        stats = sim.stats.client(client_id)
        refused = await self._auth_admitted(client_id)
        if refused is not None:
            return refused
        company = sim.company_by_client(client_id)
        if company is None or secret != company.client_secret:
            return Response(b"", 200)
        if company.company_id in sim.disabled:
            return json_response({"error": "inactive client"})
        pair = sim.tokens.issue(
            company, sim.faults.access_token_ttl_s, sim.faults.refresh_token_ttl_s
        )
        stats.logins += 1
        stats.events.append((time.monotonic(), "login"))
        return json_response(pair)

    async def refresh(self, request: Request) -> Response:
        sim = self.sim
        await self.gate.latency()
        token = bearer(request)
        company = sim.tokens.peek_client(token) if token else None
        if token is None or company is None:
            sim.stats.unauthorized_anonymous += 1
            return error_response(
                ApiError(
                    401,
                    "Unauthorized",
                    "a refresh token is required: Authorization: JWT <refresh_token>",
                )
            )
        stats = sim.stats.client(company.client_id)
        refused = await self._auth_admitted(company.client_id)
        if refused is not None:
            return refused
        if sim.faults.echoes_token(request.scope["path"]):
            return error_response(token_echoed(token))
        if company.company_id in sim.disabled:
            return json_response({"error": "inactive client"})
        try:
            pair = sim.tokens.rotate(
                token, sim.faults.access_token_ttl_s, sim.faults.refresh_token_ttl_s
            )
        except TokenError as exc:
            stats.unauthorized += 1
            return error_response(ApiError(401, "Unauthorized", f"invalid refresh token: {exc}"))
        stats.refreshes += 1
        stats.events.append((time.monotonic(), "refresh"))
        return json_response(pair)

    async def _auth_admitted(self, client_id: str) -> Response | None:
        """Count an auth call; its answer when the auth limit or a fault refuses it."""
        sim = self.sim
        stats = sim.stats.client(client_id)
        stats.auth_requests += 1
        wait = sim.auth_limiter.admit(client_id, sim.faults.auth_rate_limit_per_minute)
        if wait is not None:
            stats.auth_rate_limited += 1
            return rate_limited(wait, header=True)
        return await self._auth_fault()

    async def _auth_fault(self) -> Response | None:
        """The answer of an injected auth failure (``auth_errors``, ``auth_stalls``), if any."""
        faults = self.sim.faults
        if faults.auth_errors > 0:
            faults.auth_errors -= 1
            return error_response(ApiError(503, "Service Unavailable", "injected auth failure"))
        if faults.auth_stalls > 0:
            faults.auth_stalls -= 1
            await asyncio.sleep(faults.stall_s)
            return error_response(ApiError(504, "Gateway Timeout", "injected auth stall"))
        return None
