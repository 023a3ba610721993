"""Tokens the process holds are masked by value, whatever their shape."""

from __future__ import annotations

import secrets

from breezeway_daemon import redact
from breezeway_daemon.errors import describe


def test_an_opaque_token_echoed_in_an_error_body_is_masked_once_held() -> None:
    token = "opaque-" + secrets.token_hex(12)  # no JWT shape, no "Bearer" before it
    echoed = f'400 Bad Request: {{"detail": "token {token} is not allowed here"}}'
    assert token in redact.scrub_credentials(echoed), "not held yet: the patterns cannot know it"
    redact.hold_tokens(token, None)
    assert token not in redact.scrub_credentials(echoed)
    assert token not in redact.scrub(echoed)
    assert token not in describe(RuntimeError(echoed))
    assert "is not allowed here" in redact.scrub_credentials(echoed), "the rest is kept"


def test_held_tokens_are_bounded_and_short_values_are_never_held() -> None:
    redact.hold_tokens("short")
    assert redact.scrub_credentials("a short word") == "a short word"
    first = "first-" + secrets.token_hex(10)
    redact.hold_tokens(first)
    for _ in range(redact.MAX_HELD_TOKENS):
        redact.hold_tokens(secrets.token_hex(10))
    assert first in redact.scrub_credentials(first), "the oldest token was let go"
