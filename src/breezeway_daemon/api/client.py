"""The Breezeway API client: authenticated, paced, retried requests and paged listings.

``BreezewayApi`` owns what regions share (the HTTP pool, the token cache, one
pacer per credential, whose minute other processes share through the database)
and hands out one ``BreezewayClient`` per region. A request
passes three layers, outermost first: auth (token attached, a 401 renews it
once), retries (``RetryPolicy``), and one paced, counted send. Listings yield
one page of records at a time.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog

from breezeway_daemon import __version__, metrics
from breezeway_daemon.api.budget import CredentialBudget
from breezeway_daemon.api.errors import (
    ApiError,
    AuthError,
    NotFound,
    PermanentApiError,
    TransientApiError,
)
from breezeway_daemon.api.pacing import WINDOW_S as PACING_WINDOW_S
from breezeway_daemon.api.pacing import Pacer
from breezeway_daemon.api.tokens import TokenCache, credential_fingerprint, retry_after_seconds
from breezeway_daemon.config import Settings
from breezeway_daemon.entities import Endpoint, EntitySpec
from breezeway_daemon.records import loads

log = structlog.get_logger(__name__)

INVENTORY_PATH = "/public/inventory/v1"
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
MAX_429_WAITS = 20


@dataclass
class CallCounter:
    """API calls made on behalf of one run (or one command)."""

    calls: int = 0
    retries: int = 0
    rate_limited: int = 0


_counter: ContextVar[CallCounter | None] = ContextVar("breezeway_call_counter", default=None)


@contextmanager
def count_calls(counter: CallCounter) -> Iterator[CallCounter]:
    """Count the API calls made in this context (and tasks started from it) into ``counter``."""
    token = _counter.set(counter)
    try:
        yield counter
    finally:
        _counter.reset(token)


@dataclass
class Page:
    records: list[dict[str, Any]]
    number: int
    total_pages: int | None = None
    total_results: int | None = None


@dataclass
class ListingStats:
    """What a listing saw; ``shifted`` means records moved while it paged."""

    pages: int = 0
    records: int = 0
    repeats: int = 0
    shifted: bool = False
    totals_seen: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class Request:
    """One GET of one region: what every error about it names (never its token)."""

    region: str
    path: str
    params: dict[str, Any]
    background: bool = False
    """At the pacer's lower priority (the task details): see ``Pacer.slot``."""

    def error(self, cls: type[ApiError], message: str, **details: Any) -> ApiError:
        return cls(message, region=self.region, endpoint=self.path, params=self.params, **details)


@dataclass
class Sent:
    """What one send gave: an answer, or why there was none."""

    response: httpx.Response | None
    error: str | None = None  # "timed out", "connection error (...)"

    @property
    def failure(self) -> str | None:
        """Why another attempt is needed (no answer, or a 5xx); None otherwise."""
        if self.response is None:
            return self.error
        status = self.response.status_code
        return f"server error {status}" if status >= 500 else None


class RetryPolicy:
    """How long one request keeps trying, across all its sends (a 401's repeat included).

    Timeouts, connection errors and 5xx are retried with exponential backoff and full
    jitter; a 429 waits for the API's reset (or a backoff). Both stop at
    ``http_max_attempts`` failed sends (``MAX_429_WAITS`` waits) or when the next wait
    would end beyond ``http_retry_budget_s``; nothing sleeps after the last attempt.
    """

    def __init__(self, settings: Settings) -> None:
        self.max_attempts = settings.http_max_attempts
        self.budget_s = settings.http_retry_budget_s
        self.started = time.monotonic()
        self.failures = 0
        self.waits_429 = 0

    def delay_after_failure(self) -> float | None:
        """The wait before the next attempt after a failed send; None: give up."""
        self.failures += 1
        delay = _backoff(self.failures)
        if self.failures >= self.max_attempts or not self._fits(delay):
            return None
        return delay

    def wait_after_429(self, response: httpx.Response) -> float | None:
        """The wait a 429 asks for; None: give up."""
        self.waits_429 += 1
        wait = retry_after_seconds(response) or _backoff(self.waits_429)
        if self.waits_429 > MAX_429_WAITS or not self._fits(wait):
            return None
        return wait

    def _fits(self, wait: float) -> bool:
        return time.monotonic() - self.started + wait <= self.budget_s


class BreezewayClient:
    """The API as one region's credential sees it."""

    def __init__(
        self,
        region: str,
        http: httpx.AsyncClient,
        tokens: TokenCache,
        pacer: Pacer,
        settings: Settings,
    ) -> None:
        self.region = region
        self.http = http
        self.tokens = tokens
        self.pacer = pacer
        self.settings = settings
        self._company_id: int | None = None

    # --- requests ---------------------------------------------------------------
    async def get(
        self, path: str, params: Mapping[str, Any] | None = None, *, background: bool = False
    ) -> Any:
        """GET ``path`` under the inventory base path and return its JSON.

        A 404 raises ``NotFound``; another 4xx ``PermanentApiError`` at once, with the
        status, endpoint, parameters and the API's error body. ``background``: at the
        pacer's lower priority, never taking a place a listing waits for.
        """
        request = Request(self.region, path, dict(params or {}), background)
        response = await self._authenticated(request, RetryPolicy(self.settings))
        status = response.status_code
        if status < 300:
            return loads(response.content)
        if status == 404:
            raise request.error(NotFound, "not found", status=404)
        raise request.error(
            PermanentApiError, "request refused", status=status, body=_error_body(response)
        )

    async def _authenticated(self, request: Request, retries: RetryPolicy) -> httpx.Response:
        """Auth layer: send with the region's access token; a 401 renews it once and repeats
        the request once (one renewal for all the requests that saw it)."""
        token = await self.tokens.get(self.region)
        response = await self._retried(request, token, retries)
        if response.status_code != 401:
            return response
        token = await self.tokens.renew_after_401(self.region, token)
        response = await self._retried(request, token, retries)
        if response.status_code == 401:
            raise request.error(
                AuthError,
                "access token refused right after renewal",
                status=401,
                body=_error_body(response),
            )
        return response

    async def _retried(self, request: Request, token: str, retries: RetryPolicy) -> httpx.Response:
        """Retry layer: send until an answer that is neither a 429 nor a 5xx, as ``retries``
        allows; a 429 holds the whole credential's pacer, not just this request."""
        counter = _counter.get()
        while True:
            sent = await self._send(request, token)
            response, failure = sent.response, sent.failure
            if failure is None and response is not None:
                if response.status_code != 429:
                    return response
                if counter is not None:
                    counter.rate_limited += 1
                wait = retries.wait_after_429(response)
                if wait is None:
                    message = f"still rate limited after {retries.waits_429} waits"
                    raise request.error(TransientApiError, message, status=429)
                self.pacer.block_for(wait)
                continue
            delay = retries.delay_after_failure()
            if delay is None:
                raise request.error(
                    TransientApiError,
                    f"{failure} after {retries.failures} attempts",
                    status=response.status_code if response is not None else None,
                    body=_error_body(response) if response is not None else None,
                )
            if counter is not None:
                counter.retries += 1
            metrics.api_retry(self.region)
            log.warning(
                "api_retry", region=self.region, endpoint=request.path, attempt=retries.failures,
                error=failure, delay_s=round(delay, 2),
            )  # fmt: skip
            await asyncio.sleep(delay)

    async def _send(self, request: Request, token: str) -> Sent:
        """Send-once layer: one GET under the credential's pacer, counted into the run."""
        async with self.pacer.slot(request.background):
            counter = _counter.get()
            if counter is not None:
                counter.calls += 1
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation (watchdog, shutdown) that arrives as the request completes.
                async with asyncio.timeout(self.settings.http_timeout_s + 5):
                    response = await self.http.get(
                        INVENTORY_PATH + request.path,
                        params=request.params,
                        headers={"Authorization": f"JWT {token}"},
                    )
                sent = Sent(response)
            except (TimeoutError, httpx.TimeoutException):
                sent = Sent(None, "timed out")
            except httpx.TransportError as err:
                sent = Sent(None, f"connection error ({type(err).__name__})")
        metrics.api_answered(self.region, sent.response)
        return sent

    # --- listings ---------------------------------------------------------------
    async def pages(
        self,
        endpoint: Endpoint,
        params: Mapping[str, Any] | None = None,
        stats: ListingStats | None = None,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield a listing page by page; an id seen earlier in this listing is dropped.

        Paged listings are asked for in ascending order, so records created while
        paging land at the end; ``stats.shifted`` tells when the listing's total
        changed while it was paged (a record may then have been skipped).
        """
        stats = stats if stats is not None else ListingStats()
        params = dict(params or {})
        if endpoint.company_param and "company_id" not in params:
            company = await self.company_id()
            if company is not None:
                params["company_id"] = company
        seen: set[Any] = set()
        async for page in self._raw_pages(endpoint, params):
            stats.pages += 1
            if page.total_results is not None:
                stats.totals_seen.add(page.total_results)
                stats.shifted = len(stats.totals_seen) > 1
            fresh = []
            for record in page.records:
                key = record.get("id") if isinstance(record, dict) else None
                if key is not None and isinstance(key, int | str):
                    if key in seen:
                        stats.repeats += 1
                        continue
                    seen.add(key)
                fresh.append(record)
            stats.records += len(fresh)
            if fresh:
                yield fresh

    async def _raw_pages(self, endpoint: Endpoint, params: dict[str, Any]) -> AsyncIterator[Page]:
        if not endpoint.paged:
            answer = await self.get(endpoint.path, params)
            if not isinstance(answer, list):
                raise ApiError(
                    "expected a JSON array",
                    region=self.region,
                    endpoint=endpoint.path,
                    params=params,
                )
            yield Page(answer, 1, 1, len(answer))
            return
        number = 1
        full_page: int | None = None
        while True:
            query = {
                **params,
                "page": number,
                "limit": self.settings.page_size,
                "sort_order": "asc",
            }
            answer = await self.get(endpoint.path, query)
            if not isinstance(answer, dict) or not isinstance(answer.get("results"), list):
                raise ApiError(
                    "expected a paging envelope",
                    region=self.region,
                    endpoint=endpoint.path,
                    params=query,
                )
            total_pages = _int_or_none(answer.get("total_pages"))
            page = Page(
                answer["results"], number, total_pages, _int_or_none(answer.get("total_results"))
            )
            # The server may cap ``limit`` below what was asked: its answer says what a
            # full page is. Without ``total_pages``, a short (or empty) page is the last.
            full_page = _int_or_none(answer.get("limit")) or full_page or len(page.records)
            yield page
            if not page.records:
                return
            if total_pages is not None:
                if number >= total_pages:
                    return
            elif len(page.records) < full_page:
                return
            number += 1

    # --- single calls -----------------------------------------------------------
    async def company_id(self) -> int | None:
        """The configured company id, else the only company the credential sees."""
        if self._company_id is None:
            configured = self.settings.regions[self.region].company_id
            if configured is not None:
                self._company_id = configured
            else:
                companies = await self.get("/companies")
                if not isinstance(companies, list) or len(companies) != 1:
                    count = len(companies) if isinstance(companies, list) else 0
                    raise PermanentApiError(
                        f"the credential sees {count} companies: set "
                        f"BREEZEWAY_REGIONS__{self.region.upper()}__COMPANY_ID",
                        region=self.region,
                    )
                self._company_id = int(companies[0]["id"])
        return self._company_id

    async def record(self, spec: EntitySpec, record_id: int) -> dict[str, Any] | None:
        """One record by id at ``spec.single_record_path``; None when the API says it no
        longer exists (404)."""
        if spec.single_record_path is None:
            raise ValueError(f"{spec.name}: the API has no single-record path for it")
        try:
            answer = await self.get(spec.single_record_path.format(id=record_id))
        except NotFound:
            return None
        return answer if isinstance(answer, dict) else None


class BreezewayApi:
    """What all regions share: the HTTP pool, the token cache, one pacer per credential."""

    def __init__(
        self,
        settings: Settings,
        tokens_pool: Any,
        *,
        transport: Any = None,
        pacing_window_s: float = PACING_WINDOW_S,
    ) -> None:
        """``pacing_window_s``: the rolling window ``requests_per_minute`` applies to (the
        API's minute plus a margin); only tests shorten it."""
        self.settings = settings
        self.pacing_window_s = pacing_window_s
        self.http = httpx.AsyncClient(
            base_url=settings.api_base_url,
            timeout=httpx.Timeout(settings.http_timeout_s),
            # An idle connection is dropped after 4 s, before servers that close theirs
            # at 5 s (uvicorn's default, the simulator's) do: reusing one the server is
            # closing fails the request with RemoteProtocolError and costs a retry.
            limits=httpx.Limits(
                max_connections=100, max_keepalive_connections=50, keepalive_expiry=4.0
            ),
            headers={"User-Agent": f"breezeway-daemon/{__version__}"},
            transport=transport,
            follow_redirects=False,
        )
        self.tokens = TokenCache(tokens_pool, self.http, settings)
        self._pacers: dict[str, Pacer] = {}

    def client(self, region: str) -> BreezewayClient:
        """The client for ``region`` (its pacer is shared by every client of that region)."""
        pacer = self._pacers.get(region)
        if pacer is None:
            pacer = self._pacers[region] = Pacer(
                self.settings.requests_per_minute,
                self.settings.max_in_flight_per_credential,
                window_s=self.pacing_window_s,
                budget=self._budget(region),
            )
        return BreezewayClient(region, self.http, self.tokens, pacer, self.settings)

    def _budget(self, region: str) -> CredentialBudget | None:
        """The credential's reservations in the database, shared with other processes."""
        if self.tokens.pool is None or region not in self.settings.regions:
            return None
        return CredentialBudget(
            self.tokens.pool, credential_fingerprint(self.settings.regions[region])
        )

    def update_settings(self, settings: Settings) -> None:
        """Take a reloaded configuration.

        New pacing applies at once to every client, running ones included: each
        credential keeps its one pacer (and the requests it already counted), so a
        reload never lets two pacers share a credential's limit.
        """
        self.settings = settings
        self.tokens.update_settings(settings)
        for region, pacer in list(self._pacers.items()):
            if region not in settings.regions:
                del self._pacers[region]
            else:
                pacer.reconfigure(
                    settings.requests_per_minute, settings.max_in_flight_per_credential
                )
                if pacer.budget is not None:
                    pacer.budget.credential = credential_fingerprint(settings.regions[region])

    async def aclose(self) -> None:
        await self.http.aclose()


def _backoff(attempt: int) -> float:
    """Full jitter: uniform between 0 and the exponential ceiling."""
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _error_body(response: httpx.Response) -> str | None:
    text = response.text.strip()
    return " ".join(text.split())[:300] if text else None
