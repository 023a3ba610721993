"""The simulator's HTTP face: a Starlette app implementing BREEZEWAY_API.md.

Routes (each also answers with or without a trailing slash, never redirecting):

``POST /public/auth/v1/``, ``POST /public/auth/v1/refresh``;
``GET /public/inventory/v1/`` + ``companies``, ``property``, ``property/tags``, ``reservation``,
``reservation/tags``, ``task/``, ``task/tags``, ``task/{id}``, ``task/{id}/comments``,
``task/{id}/requirements``, ``people``, ``supplies``;
with ``control=True`` also the ``/_sim/`` endpoints of ``control``.

Order of checks on a data request: latency, token (401), 429 burst, rate limit (429),
injected 5xx / stall, then the request itself (422, 403, 404, 200). Unknown paths answer
``404 {"error": "Not Found", ...}``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import evolve
from .auth import TokenError
from .badrecords import BAD_REQUIREMENTS, KIND_ORDER
from .companies import Company
from .details import render_comments, render_requirements
from .generate import Builder
from .limits import retry_after_text
from .listings import (
    FIELDS,
    select_people,
    select_properties,
    select_reservations,
    select_supplies,
    select_tasks,
    task_property,
)
from .query import ApiError, page_envelope, parse_int, parse_paging
from .records import Row, TaskRow, row_blob, task_blob
from .store import CompanyData
from .webhooks import webhook_control_routes, webhook_routes

if TYPE_CHECKING:
    from .simulation import Simulator

__all__ = ["build_app"]

API = "/public/inventory/v1"
AUTH = "/public/auth/v1"
JSON = "application/json"
_QUERY_CACHE_SIZE = 1024  # listings differ per property: one entry per property and query


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


def _bearer(request: Request) -> str | None:
    """The token of ``Authorization: JWT <token>``; None when absent or another scheme."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme != "JWT" or not token.strip():
        return None
    return token.strip()


def _blobs_of(data: CompanyData) -> Callable[[list[Any]], list[bytes]]:
    """Serializer of a page's items: task rows, other rows, or injected bytes."""
    ctx = data.ctx

    def blobs(items: list[Any]) -> list[bytes]:
        out = []
        for item in items:
            cls = item.__class__
            if cls is TaskRow:
                out.append(item.blob or task_blob(ctx, item))
            elif cls is Row:
                out.append(item.blob or row_blob(item))
            else:
                out.append(item)  # injected bad record, already bytes
        return out

    return blobs


class Handlers:
    """Request handlers bound to one simulator."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    # auth

    async def login(self, request: Request) -> Response:
        sim = self.sim
        await self._latency()
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
        await self._latency()
        token = _bearer(request)
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

    # the gate every data request passes

    async def _latency(self) -> None:
        latency = self.sim.faults.latency_s
        if latency > 0:
            await asyncio.sleep(latency)

    async def _admit(self, request: Request) -> Company:
        """The requesting company, or ``ApiError``/``_Early`` for 401, 429, 5xx."""
        sim = self.sim
        faults = sim.faults
        await self._latency()
        token = _bearer(request)
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
                raise _Early(rate_limited(wait, header=False))
        wait = sim.data_limiter.admit(company.client_id, faults.data_rate_limit_per_minute)
        if wait is not None:
            stats.rate_limited += 1
            raise _Early(rate_limited(wait, header=False))
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

    def _scope(self, company: Company, params: Mapping[str, str]) -> CompanyData:
        wanted = parse_int(params, "company_id")
        if wanted is not None and wanted != company.company_id:
            raise ApiError(
                403, "Forbidden", f"company_id {wanted} is not accessible with this credential"
            )
        return self.sim.data(company.company_id)

    # paged listings

    def _shift(self, data: CompanyData, entity: str, page: int, property_id: int | None) -> None:
        faults = self.sim.faults
        if page < 2 or not (faults.shift_while_paging or faults.delete_while_paging):
            return
        rng, now = self.sim.fault_rng, self.sim.now()
        if faults.shift_while_paging:
            n = faults.shift_while_paging
            evolve.create_records(data, Builder(data, rng), entity, n, now, property_id)
            evolve.change_records(data, entity, n, rng, now, property_id)
        if faults.delete_while_paging:
            evolve.delete_records(data, entity, faults.delete_while_paging, rng, property_id)

    def _with_bad(
        self, data: CompanyData, entity: str, items: list[Any], victim: bool = True
    ) -> list[Any]:
        kinds = self.sim.faults.bad_records
        if not kinds:
            return items
        items = list(items)
        if "duplicate_id" in kinds and items:
            items.insert(1, items[0])
        if victim:
            injected = self.sim.bad_records(data.company.company_id, entity)
            items.extend(orjson.dumps(record) for record in injected)
        return items

    def _cached(
        self, data: CompanyData, key: tuple[Any, ...], compute: Callable[[], list[Any]]
    ) -> list[Any]:
        cache = data.query_cache
        hit = cache.get(key)
        if hit is not None and hit[0] == data.version:
            cache.move_to_end(key)
            return hit[1]
        items = compute()
        cache[key] = (data.version, items)
        if len(cache) > _QUERY_CACHE_SIZE:
            cache.popitem(last=False)
        return items

    async def _paged(self, request: Request, entity: str) -> Response:
        company = await self._admit(request)
        params = request.query_params
        data = self._scope(company, params)
        page, limit, sort_by, desc = parse_paging(
            params, self.sim.faults.page_limit_cap, FIELDS[entity]
        )
        key_params = tuple(
            sorted((k, v) for k, v in params.multi_items() if k not in ("page", "limit"))
        )
        if entity == "tasks":
            property_id = task_property(data, params)
            if property_id is not None and property_id in self.sim.faults.fail_property_tasks:
                sim_stats = self.sim.stats.client(company.client_id)
                sim_stats.server_errors += 1
                raise ApiError(
                    500, "Internal Server Error", "injected failure for this property's tasks"
                )
            self._shift(data, entity, page, property_id)
            items: list[Any] = self._cached(
                data,
                ("tasks", property_id, key_params),
                lambda: select_tasks(data, property_id, params, sort_by, desc),
            )
            if self.sim.faults.bad_records:
                victim = property_id is not None and property_id == min(data.properties)
                items = self._with_bad(data, entity, items, victim)
        else:
            property_id = parse_int(params, "property_id") if entity == "reservations" else None
            self._shift(data, entity, page, property_id)
            if entity == "reservations":
                today = self.sim.now().date()
                items = self._cached(
                    data,
                    (entity, key_params, today),
                    lambda: select_reservations(data, params, sort_by, desc, today),
                )
            elif entity == "properties":
                items = self._cached(
                    data,
                    (entity, key_params),
                    lambda: select_properties(data, params, sort_by, desc),
                )
            else:
                items = self._cached(
                    data, (entity, key_params), lambda: select_supplies(data, params, sort_by, desc)
                )
            items = self._with_bad(data, entity, items)
        return Response(page_envelope(items, page, limit, _blobs_of(data)), media_type=JSON)

    async def properties(self, request: Request) -> Response:
        return await self._paged(request, "properties")

    async def reservations(self, request: Request) -> Response:
        return await self._paged(request, "reservations")

    async def tasks(self, request: Request) -> Response:
        return await self._paged(request, "tasks")

    async def supplies(self, request: Request) -> Response:
        return await self._paged(request, "supplies")

    # plain arrays and single records

    async def companies(self, request: Request) -> Response:
        company = await self._admit(request)
        return json_response([company.as_json()])

    async def people(self, request: Request) -> Response:
        company = await self._admit(request)
        data = self._scope(company, request.query_params)
        items: list[Any] = select_people(data, request.query_params)
        items = self._with_bad(data, "people", items)
        return Response(b"[" + b",".join(_blobs_of(data)(items)) + b"]", media_type=JSON)

    def _tags(self, kind: str) -> Callable[[Request], Awaitable[Response]]:
        async def tags(request: Request) -> Response:
            company = await self._admit(request)
            data = self._scope(company, request.query_params)
            rows = sorted(data.tags[kind].values(), key=lambda r: r.id)
            return Response(b"[" + b",".join([row_blob(r) for r in rows]) + b"]", media_type=JSON)

        return tags

    async def task(self, request: Request) -> Response:
        company = await self._admit(request)
        data = self._scope(company, request.query_params)
        task_id = request.path_params["task_id"]
        found = data.tasks.get(task_id)
        if found is None:
            raise ApiError(404, "Not Found", f"task {task_id} not found")
        return Response(task_blob(data.ctx, found), media_type=JSON)

    async def task_comments(self, request: Request) -> Response:
        data, task_id, task = await self._task_of(request)
        if task is None:
            return json_response([])  # an injected bad task: it has no comments
        return json_response(render_comments(data.ctx, task_id, data.comments.get(task_id, [])))

    async def task_requirements(self, request: Request) -> Response:
        data, task_id, task = await self._task_of(request)
        if task is None:
            bad = "requirements_object" in self.sim.faults.bad_records and task_id == data.bad_id(
                KIND_ORDER.index("requirements_object") + 1
            )
            return json_response(BAD_REQUIREMENTS if bad else [])
        return json_response(render_requirements(task))

    async def _task_of(self, request: Request) -> tuple[CompanyData, int, TaskRow | None]:
        """The company data and task of a details request; 404 when the task does not exist
        (an injected bad task of the current faults exists, as ``None``)."""
        company = await self._admit(request)
        data = self._scope(company, request.query_params)
        task_id = request.path_params["task_id"]
        found = data.tasks.get(task_id)
        if found is None:
            injected = self.sim.bad_records(company.company_id, "tasks")
            if not any(record.get("id") == task_id for record in injected):
                raise ApiError(404, "Not Found", f"task {task_id} not found")
        return data, task_id, found


class _Early(Exception):
    """A finished answer raised from the gate (429s)."""

    def __init__(self, response: Response) -> None:
        self.response = response


def _guarded(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc)
        except _Early as early:
            return early.response

    return endpoint


def _both(
    path: str, endpoint: Callable[[Request], Awaitable[Response]], methods: list[str]
) -> list[Route]:
    bare = path.rstrip("/")
    return [
        Route(bare, _guarded(endpoint), methods=methods),
        Route(bare + "/", _guarded(endpoint), methods=methods),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "unexpected error"
    return json_response(
        {"error": str(detail), "description": f"{request.method} {request.url.path}"}, status
    )


def build_app(sim: Simulator, control: bool = False) -> Starlette:
    """The Starlette app for ``sim``; see the module docstring."""
    h = Handlers(sim)
    routes: list[Route] = [
        # The task listing first: it is the hot path, and routes are matched in order.
        *_both(API + "/task", h.tasks, ["GET"]),
        *_both(API + "/task/tags", h._tags("task"), ["GET"]),
        *_both(API + "/task/{task_id:int}", h.task, ["GET"]),
        *_both(API + "/task/{task_id:int}/comments", h.task_comments, ["GET"]),
        *_both(API + "/task/{task_id:int}/requirements", h.task_requirements, ["GET"]),
        *_both(API + "/reservation", h.reservations, ["GET"]),
        *_both(API + "/property", h.properties, ["GET"]),
        *_both(API + "/people", h.people, ["GET"]),
        *_both(API + "/supplies", h.supplies, ["GET"]),
        *_both(API + "/companies", h.companies, ["GET"]),
        *_both(API + "/property/tags", h._tags("property"), ["GET"]),
        *_both(API + "/reservation/tags", h._tags("reservation"), ["GET"]),
        *_both(AUTH, h.login, ["POST"]),
        *_both(AUTH + "/refresh", h.refresh, ["POST"]),
    ]
    routes.extend(webhook_routes(sim.webhooks, h._admit, _guarded))
    if control:
        from .control import control_routes

        routes.extend(control_routes(sim))
        routes.extend(webhook_control_routes(sim.webhooks))
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.router.redirect_slashes = False
    return app
