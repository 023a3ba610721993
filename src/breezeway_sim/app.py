"""The simulator's HTTP face: a Starlette app implementing BREEZEWAY_API.md (the data
endpoints here; the auth endpoints in ``login``, the request gate in ``gate``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import evolve
from .badrecords import BAD_REQUIREMENTS, KIND_ORDER
from .details import render_comments, render_requirements
from .gate import JSON, Gate, guarded, json_response
from .generate import Builder
from .listings import (
    FIELDS,
    select_people,
    select_properties,
    select_reservations,
    select_supplies,
    select_tasks,
    task_property,
)
from .login import AuthHandlers
from .query import ApiError, page_envelope, parse_int, parse_paging
from .records import Row, TaskRow, row_blob, task_blob
from .store import CompanyData
from .webhooks import webhook_control_routes, webhook_routes

if TYPE_CHECKING:
    from .simulation import Simulator

__all__ = ["build_app"]

API = "/public/inventory/v1"
AUTH = "/public/auth/v1"
_QUERY_CACHE_SIZE = 1024  # listings differ per property: one entry per property and query


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


class DataHandlers:
    """The data endpoints: paged listings, plain arrays, tags and single tasks."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.sim = gate.sim

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
        company = await self.gate.admit(request)
        params = request.query_params
        data = self.gate.scope(company, params)
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
        company = await self.gate.admit(request)
        return json_response([company.as_json()])

    async def people(self, request: Request) -> Response:
        company = await self.gate.admit(request)
        data = self.gate.scope(company, request.query_params)
        items: list[Any] = select_people(data, request.query_params)
        items = self._with_bad(data, "people", items)
        return Response(b"[" + b",".join(_blobs_of(data)(items)) + b"]", media_type=JSON)

    def _tags(self, kind: str) -> Callable[[Request], Awaitable[Response]]:
        async def tags(request: Request) -> Response:
            company = await self.gate.admit(request)
            data = self.gate.scope(company, request.query_params)
            rows = sorted(data.tags[kind].values(), key=lambda r: r.id)
            return Response(b"[" + b",".join([row_blob(r) for r in rows]) + b"]", media_type=JSON)

        return tags

    async def task(self, request: Request) -> Response:
        company = await self.gate.admit(request)
        data = self.gate.scope(company, request.query_params)
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
        company = await self.gate.admit(request)
        data = self.gate.scope(company, request.query_params)
        task_id = request.path_params["task_id"]
        found = data.tasks.get(task_id)
        if found is None:
            injected = self.sim.bad_records(company.company_id, "tasks")
            if not any(record.get("id") == task_id for record in injected):
                raise ApiError(404, "Not Found", f"task {task_id} not found")
        return data, task_id, found


def _both(
    path: str, endpoint: Callable[[Request], Awaitable[Response]], methods: list[str]
) -> list[Route]:
    bare = path.rstrip("/")
    return [
        Route(bare, guarded(endpoint), methods=methods),
        Route(bare + "/", guarded(endpoint), methods=methods),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "unexpected error"
    return json_response(
        {"error": str(detail), "description": f"{request.method} {request.url.path}"}, status
    )


def build_app(sim: Simulator, control: bool = False) -> Starlette:
    """The Starlette app for ``sim``.

    Routes (each also answers with or without a trailing slash, never redirecting):
    ``POST /public/auth/v1/``, ``POST /public/auth/v1/refresh``;
    ``GET /public/inventory/v1/`` + ``companies``, ``property``, ``property/tags``,
    ``reservation``, ``reservation/tags``, ``task/``, ``task/tags``, ``task/{id}``,
    ``task/{id}/comments``, ``task/{id}/requirements``, ``people``, ``supplies``;
    the ``/public/webhook/v1`` routes of ``webhooks``; with ``control=True`` also the
    ``/_sim/`` endpoints of ``control``. Unknown paths answer ``404 {"error": "Not Found", ...}``.

    Order of checks on a data request (``Gate.admit``): latency, token (401), 429 burst,
    rate limit (429), injected 5xx / stall, then the request itself (422, 403, 404, 200).
    """
    gate = Gate(sim)
    h = DataHandlers(gate)
    auth = AuthHandlers(gate)
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
        *_both(AUTH, auth.login, ["POST"]),
        *_both(AUTH + "/refresh", auth.refresh, ["POST"]),
    ]
    routes.extend(webhook_routes(sim.webhooks, gate.admit, guarded))
    if control:
        from .control import control_routes

        routes.extend(control_routes(sim))
        routes.extend(webhook_control_routes(sim.webhooks))
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.router.redirect_slashes = False
    return app
