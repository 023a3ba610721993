"""The simulator's gate: what a request passes before its handler (latency, token,
limits, injected 5xx and stalls), and the JSON answers every handler shares."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from .auth import TokenError
from .companies import Company
from .limits import retry_after_text
from .query import ApiError, parse_int
from .store import CompanyData

if TYPE_CHECKING:
    from .simulation import Simulator

JSON = "application/json"


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def error_response(exc: ApiError) -> Response:
    return json_response({"error": exc.error, "description": exc.description}, exc.status)


def token_echoed(token: str) -> ApiError:
    """The ``echo_token_paths`` fault: a 422 whose message quotes the caller's token."""
    return ApiError(422, "Unprocessable Entity", f"the credential {token} may not do this")


def rate_limited(seconds: float, header: bool) -> Response:
    body = {"details": {"message": "Rate limit exceeded", "retry_after": retry_after_text(seconds)}}
    headers = {"Retry-After": str(max(1, math.ceil(seconds)))} if header else None
    return json_response(body, 429, headers)


def bearer(request: Request) -> str | None:
    """The token of ``Authorization: JWT <token>``; None when absent or another scheme."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme != "JWT" or not token.strip():
        return None
    return token.strip()


class Early(Exception):
    """A finished answer raised from the gate (429s)."""

    def __init__(self, response: Response) -> None:
        self.response = response


def guarded(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` answering its ``ApiError`` and ``Early`` as responses."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc)
        except Early as early:
            return early.response

    return endpoint


class Gate:
    """The checks of a data request, in order: latency, token (401), 429 burst, rate limit
    (429), echoed token (422), injected 5xx / stall; then the company scope (403)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    async def latency(self) -> None:
        latency = self.sim.faults.latency_s
        if latency > 0:
            await asyncio.sleep(latency)

    async def admit(self, request: Request) -> Company:
        """The requesting company, or ``ApiError``/``Early`` for 401, 429, 5xx."""
        sim = self.sim
        faults = sim.faults
        await self.latency()
        token = bearer(request)
        if token is None:
            sim.stats.unauthorized_anonymous += 1
            raise ApiError(
                401,
                "Unauthorized",
                "missing or malformed Authorization header (expected: JWT <access_token>)",
            )
        try:
            company = sim.tokens.check_access(token)
        except TokenError as exc:
            named = sim.tokens.peek_client(token)
            if named is None:
                sim.stats.unauthorized_anonymous += 1
            else:
                stats = sim.stats.client(named.client_id)
                stats.data_requests += 1
                stats.request_times.append(time.monotonic())
                stats.unauthorized += 1
            raise ApiError(401, "Unauthorized", str(exc)) from None
        stats = sim.stats.client(company.client_id)
        stats.data_requests += 1
        stats.request_times.append(time.monotonic())
        stats.paths[request.scope["path"]] += 1
        if company.company_id in sim.disabled:
            stats.unauthorized += 1
            raise ApiError(401, "Unauthorized", "inactive client")
        if faults.bursts:
            wait = faults.take_burst(company.company_id)
            if wait is not None:
                stats.rate_limited += 1
                raise Early(rate_limited(wait, header=False))
        wait = sim.data_limiter.admit(company.client_id, faults.data_rate_limit_per_minute)
        if wait is not None:
            stats.rate_limited += 1
            raise Early(rate_limited(wait, header=False))
        if faults.echo_token_paths and faults.echoes_token(request.scope["path"]):
            raise token_echoed(token)
        if faults.error_rate > 0 and sim.fault_rng.random() < faults.error_rate:
            stats.server_errors += 1
            status = sim.fault_rng.choice((500, 502, 503, 504))
            raise ApiError(status, "Server Error", "injected failure")
        if faults.stall_rate > 0 and sim.fault_rng.random() < faults.stall_rate:
            stats.server_errors += 1
            await asyncio.sleep(faults.stall_s)
            raise ApiError(504, "Gateway Timeout", "injected stall")
        return company

    def scope(self, company: Company, params: Mapping[str, str]) -> CompanyData:
        wanted = parse_int(params, "company_id")
        if wanted is not None and wanted != company.company_id:
            raise ApiError(
                403, "Forbidden", f"company_id {wanted} is not accessible with this credential"
            )
        return self.sim.data(company.company_id)
