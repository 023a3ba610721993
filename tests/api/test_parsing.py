"""The small parsers the client's waits and the token cache's expiry depend on."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import httpx
import orjson

from breezeway_daemon.api.tokens import jwt_expiry, retry_after_seconds


def _jwt(claims: dict[str, object]) -> str:
    payload = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    return f"eyJhbGciOiJIUzI1NiJ9.{payload}.c2ln"


def test_jwt_expiry_reads_exp_and_falls_back() -> None:
    assert jwt_expiry(_jwt({"exp": 1_800_000_000}), timedelta(hours=24)) == datetime.fromtimestamp(
        1_800_000_000, tz=UTC
    )
    for token in (_jwt({"sub": "x"}), "not-a-jwt", "a.%%%.c", _jwt({"exp": "soon"})):
        fallback = jwt_expiry(token, timedelta(hours=24)) - datetime.now(UTC)
        assert timedelta(hours=23, minutes=59) < fallback <= timedelta(hours=24), token


def _429(body: object = None, headers: dict[str, str] | None = None) -> httpx.Response:
    content = orjson.dumps(body) if body is not None else b""
    return httpx.Response(429, content=content, headers=headers)


def test_retry_after_from_the_body_the_header_or_nothing() -> None:
    reset = (datetime.now(UTC) + timedelta(seconds=5)).replace(tzinfo=None, microsecond=0)
    body = {"details": {"message": "Rate limit exceeded", "retry_after": reset.isoformat()}}
    seconds = retry_after_seconds(_429(body))
    assert seconds is not None and 4 <= seconds <= 6 + 1  # given to the second, plus a second
    # The body wins over the header; the header alone is used; neither: None (backoff).
    assert abs(retry_after_seconds(_429(body, {"Retry-After": "50"})) - seconds) < 0.5  # type: ignore[operator]
    assert retry_after_seconds(_429({"error": "x"}, {"Retry-After": "7"})) == 7.0
    assert retry_after_seconds(_429(None, {"Retry-After": "soon"})) is None
    assert retry_after_seconds(_429({"details": {"retry_after": "garbage"}})) is None
    # A reset in the past: go now (plus the rounding second), never a negative wait.
    past = (datetime.now(UTC) - timedelta(seconds=2)).replace(tzinfo=None).isoformat()
    assert 0 <= retry_after_seconds(_429({"details": {"retry_after": past}})) <= 1.0  # type: ignore[operator]
