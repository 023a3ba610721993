"""The rate limiters' windows, on a fake monotonic clock (no waiting)."""

from __future__ import annotations

import pytest

from breezeway_sim import limits


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(limits.time, "monotonic", lambda: now[0])
    return now


def test_data_window_rolls(clock):
    limiter = limits.DataLimiter()
    for _ in range(3):
        assert limiter.admit("c", 3) is None
        clock[0] += 10
    assert limiter.admit("c", 3) == pytest.approx(30)  # the first leaves the window at +60
    clock[0] += 29
    assert limiter.admit("c", 3) == pytest.approx(1)  # refusals do not count
    clock[0] += 1
    assert limiter.admit("c", 3) is None
    assert limiter.admit("other", 3) is None
    assert limiter.admit("c", None) is None


def test_auth_window_counts_refused_attempts(clock):
    limiter = limits.AuthLimiter()
    assert limiter.admit("c", 1) is None
    clock[0] += 30
    assert limiter.admit("c", 1) == pytest.approx(60)  # the reset moves out to this attempt + 60
    clock[0] += 59
    assert limiter.admit("c", 1) == pytest.approx(60)  # retrying early pushes it again
    clock[0] += 60
    assert limiter.admit("c", 1) is None
    assert limiter.admit("c", None) is None


def test_retry_after_text_is_naive_utc_rounded_up():
    text = limits.retry_after_text(0.2)
    assert len(text) == 19 and "+" not in text
