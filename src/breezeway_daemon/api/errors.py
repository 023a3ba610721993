"""Errors from the Breezeway API, each saying what failed without any secret."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from breezeway_daemon.errors import ErrorKind

# Query parameters are safe to show (ids, dates, paging); headers never are.


class ApiError(Exception):
    """A request that did not succeed. ``kind`` picks the runbook remedy."""

    kind = ErrorKind.API

    def __init__(
        self,
        message: str,
        *,
        region: str | None = None,
        status: int | None = None,
        endpoint: str | None = None,
        params: Mapping[str, Any] | None = None,
        body: str | None = None,
    ) -> None:
        self.region = region
        self.status = status
        self.endpoint = endpoint
        self.params = dict(params or {})
        self.body = body
        super().__init__(message)

    def __str__(self) -> str:
        parts = [super().__str__()]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.endpoint:
            query = "&".join(f"{k}={v}" for k, v in self.params.items())
            parts.append(f"GET {self.endpoint}" + (f"?{query}" if query else ""))
        if self.body:
            parts.append(f"answer: {self.body[:300]}")
        text = "; ".join(parts)
        return f"{self.region}: {text}" if self.region else text


class PermanentApiError(ApiError):
    """A 4xx other than 401/429: repeating the request would not help."""


class TransientApiError(ApiError):
    """5xx, timeouts or connection errors that outlasted the retry budget."""


class NotFound(PermanentApiError):
    """404: the record does not exist (a deleted task)."""


class AuthError(ApiError):
    """Tokens could not be had for a region."""

    kind = ErrorKind.TOKEN


class CredentialsRejected(AuthError):
    """The API refused the client credentials: permanent until an operator fixes them."""
