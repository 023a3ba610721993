"""The monitoring routes: ``/metrics`` (Prometheus) and ``/healthz`` (load balancers)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from breezeway_daemon import metrics
from breezeway_daemon.health import Health
from breezeway_daemon.http.listener import Listener


def add_monitoring_routes(listener: Listener, health: Health) -> None:
    """``GET /metrics`` and ``GET /healthz`` on ``listener``.

    Both are async endpoints: they run on the event loop, which owns the state they read
    (the pool, the pacers, the probe's result), and take well under a millisecond.
    """

    async def scrape(request: Request) -> Response:
        body, content_type = metrics.exposition(request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type})

    async def healthz(_request: Request) -> Response:
        healthy, body = health.report()
        return JSONResponse(body, status_code=200 if healthy else 503)

    listener.add_route("/metrics", scrape)
    listener.add_route("/healthz", healthz)
