"""Test-mode control endpoints under ``/_sim/`` (only with ``asgi_app(control=True)`` or
``simulate --control``). They need no token and are not counted in ``stats``.

The endpoints: ``control_routes``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

if TYPE_CHECKING:
    from .simulation import Simulator

__all__ = ["control_routes"]


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    body = orjson.loads(raw)
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


def control_routes(sim: Simulator) -> list[Route]:
    """The ``/_sim/`` routes for ``sim``.

    ``GET  /_sim/companies``            companies with their fake credentials
    ``GET  /_sim/now``                  ``{"now": <simulated time, ISO with zone>}``
    ``GET  /_sim/faults``               current fault settings
    ``POST /_sim/faults``               JSON object of fault fields to set (see ``faults``); 422 on
                                        unknown names or kinds
    ``POST /_sim/faults/burst_429``     ``{"count": N}`` or ``{"seconds": S}``, optional
                                        ``retry_after_s``, ``company_id``
    ``GET  /_sim/rates``, ``POST /_sim/rates``  ``{"tasks": {"change": 0.5}, ...}``
    ``POST /_sim/advance``              ``{"hours": 1.0}``; answers the events per company
    ``POST /_sim/revoke``               ``{"company_id": N}``
    ``POST /_sim/disable``              ``{"company_id": N, "disabled": true}``
    ``GET  /_sim/stats``                counters per client; ``POST /_sim/stats/reset``
    ``GET  /_sim/truth/{company_id}/{entity}``  ``{key: record}``; tag keys are ``"task:123"``
    ``GET  /_sim/bad_records/{company_id}/{entity}``  the injected bad records as served
    """

    def handler(
        fn: Callable[[Request], Awaitable[Any]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return _json(await fn(request))
            except (ValueError, TypeError, KeyError, orjson.JSONDecodeError) as exc:
                return _json({"error": "Unprocessable Entity", "description": str(exc)}, 422)

        return endpoint

    async def companies(request: Request) -> Any:
        return [
            {**c.as_json(), "client_id": c.client_id, "client_secret": c.client_secret}
            for c in sim.companies
        ]

    async def now(request: Request) -> Any:
        return {"now": sim.now().isoformat()}

    async def get_faults(request: Request) -> Any:
        return sim.faults.as_json()

    async def set_faults(request: Request) -> Any:
        sim.faults.update(**await _body(request))
        return sim.faults.as_json()

    async def burst(request: Request) -> Any:
        body = await _body(request)
        sim.faults.burst_429(
            body.get("count"),
            seconds=body.get("seconds"),
            retry_after_s=float(body.get("retry_after_s", 1.0)),
            company_id=body.get("company_id"),
        )
        return {"ok": True}

    async def get_rates(request: Request) -> Any:
        return sim.rates.as_json()

    async def set_rates(request: Request) -> Any:
        sim.rates.update(await _body(request))
        return sim.rates.as_json()

    async def advance(request: Request) -> Any:
        body = await _body(request)
        done = sim.advance(float(body.get("hours", 1.0)))
        return {"now": sim.now().isoformat(), "events": {str(k): v for k, v in done.items()}}

    async def revoke(request: Request) -> Any:
        sim.revoke_tokens(int((await _body(request))["company_id"]))
        return {"ok": True}

    async def disable(request: Request) -> Any:
        body = await _body(request)
        sim.disable_client(int(body["company_id"]), bool(body.get("disabled", True)))
        return {"ok": True}

    async def stats(request: Request) -> Any:
        return sim.stats.as_json()

    async def stats_reset(request: Request) -> Any:
        sim.stats.reset()
        return {"ok": True}

    async def truth(request: Request) -> Any:
        company_id = int(request.path_params["company_id"])
        entity = request.path_params["entity"]
        records = sim.truth(company_id, entity)
        if entity == "tags" or entity == "task_requirements":
            return {f"{a}:{b}": rec for (a, b), rec in records.items()}
        return {str(k): v for k, v in records.items()}

    async def bad(request: Request) -> Any:
        return sim.bad_records(
            int(request.path_params["company_id"]), request.path_params["entity"]
        )

    return [
        Route("/_sim/companies", handler(companies), methods=["GET"]),
        Route("/_sim/now", handler(now), methods=["GET"]),
        Route("/_sim/faults", handler(get_faults), methods=["GET"]),
        Route("/_sim/faults", handler(set_faults), methods=["POST"]),
        Route("/_sim/faults/burst_429", handler(burst), methods=["POST"]),
        Route("/_sim/rates", handler(get_rates), methods=["GET"]),
        Route("/_sim/rates", handler(set_rates), methods=["POST"]),
        Route("/_sim/advance", handler(advance), methods=["POST"]),
        Route("/_sim/revoke", handler(revoke), methods=["POST"]),
        Route("/_sim/disable", handler(disable), methods=["POST"]),
        Route("/_sim/stats", handler(stats), methods=["GET"]),
        Route("/_sim/stats/reset", handler(stats_reset), methods=["POST"]),
        Route("/_sim/truth/{company_id:int}/{entity}", handler(truth), methods=["GET"]),
        Route("/_sim/bad_records/{company_id:int}/{entity}", handler(bad), methods=["GET"]),
    ]
