"""Fault settings of the simulator: ``sim.faults``, a mutable object read on every request.

Every field and its default: ``Faults``; 429 bursts: ``Faults.burst_429``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["BAD_CHILD_KINDS", "BAD_RECORD_KINDS", "Burst", "Faults"]

BAD_RECORD_KINDS = frozenset(
    {
        "nul",
        "wrong_types",
        "missing_fields",
        "huge_strings",
        "duplicate_id",
        "unknown_property",
        "no_id",
    }
)
# Kinds that spoil only a child item of a valid record: kept apart, so that "every kind of
# bad record" (BAD_RECORD_KINDS) means what it meant before children were stored.
BAD_CHILD_KINDS = frozenset({"child_no_id", "child_not_object", "requirements_object"})


@dataclass
class Burst:
    """A pending 429 burst for one company (or all when ``company_id`` is None)."""

    remaining: int | None  # requests left, or None for a timed burst
    until: float | None  # monotonic deadline of a timed burst
    retry_after_s: float


@dataclass
class Faults:
    """What the simulator does wrong, and its limits.

    Fields (change them at any time, in-process or with ``POST /_sim/faults`` in control mode):

    ``latency_s``                 seconds added to every request (auth and data), default 0.
    ``error_rate``                share (0..1) of data requests answered 500/502/503/504.
    ``stall_rate``, ``stall_s``   share of data requests that hang ``stall_s`` seconds (default
                                  30) and then answer 504: a client's timeout should fire first.
    ``data_rate_limit_per_minute``  per client credential, rolling 60 s window of accepted data
                                  requests (default 200; ``None`` = off). Over it: 429, body
                                  ``{"details": {"message", "retry_after"}}``, no Retry-After header.
                                  ``retry_after`` is when the oldest request leaves the window.
    ``auth_rate_limit_per_minute``  login and refresh together, per client (default 1; ``None`` =
                                  off). Every attempt counts, refused ones too (an early retry
                                  pushes the reset out). Over it: 429 with ``Retry-After`` header
                                  and the same body.
    ``auth_errors``, ``auth_stalls``  N > 0: the next N auth requests (login or refresh, counted
                                  in the auth limit) answer 503, or hang ``stall_s`` then answer 504.
    ``access_token_ttl_s``        default 86400; ``refresh_token_ttl_s`` default 30 days. Read when
                                  a token is issued.
    ``page_limit_cap``            the largest ``limit`` a paged listing honours (default 100).
    ``echo_token_paths``          path endings (``"/supplies"``, ``"/refresh"``): a data request or
                                  refresh whose path ends with one answers 422 with a body that
                                  quotes the caller's token (a careless API's error message).
    ``fail_property_tasks``       property ids whose ``GET /task/`` listing answers 500.
    ``shift_while_paging``        N > 0: each request for page >= 2 of a paged listing first
                                  creates N records that the listing includes and changes N of them
                                  (``updated_at`` moves), so pages shift under the client.
    ``delete_while_paging``       N > 0: likewise deletes N records of that listing first.
    ``bad_records``               set of kinds; while a kind is set, listings carry extra injected
                                  records (ids from a range no real record uses; see
                                  ``Simulator.bad_records``). They are never in ``truth()``:
        ``nul``            a valid record whose strings contain NUL characters (``"\\u0000"``);
        ``wrong_types``    ``id`` fine, but numbers as words, dates as numbers, objects as strings;
        ``missing_fields`` only ``id`` and the parent key (``property_id``/``home_id``);
        ``huge_strings``   a valid record with a 1 MB ``name``/``note``/``description``;
        ``duplicate_id``   a real record of the listing served a second time (same page if it fits);
        ``unknown_property`` a reservation whose ``property_id`` is no property of the company;
        ``no_id``          a record without ``id``.
        The child kinds (``BAD_CHILD_KINDS``, not in ``BAD_RECORD_KINDS``):
        ``child_no_id``    a valid record whose first property photo / task assignment has no id;
        ``child_not_object`` a valid record with a string first in its photos (property, task) or
                           guests (reservation);
        ``requirements_object`` a valid task whose ``/requirements`` answers an object, not a list.
        They go to properties, reservations, people, supplies (not paged: people) and to the task
        listing of the company's lowest-id property; tags stay clean. ``unknown_property`` applies
        to reservations only.

    429 bursts: ``faults.burst_429(count=N)`` makes the next N data requests of a credential (or of
    every credential) answer 429 with ``retry_after`` = now + ``retry_after_s``;
    ``faults.burst_429(seconds=S)`` makes every data request for the next S seconds answer 429 with
    ``retry_after`` = the end of the burst. Burst 429s do not count in the rate-limit window.
    """

    latency_s: float = 0.0
    error_rate: float = 0.0
    stall_rate: float = 0.0
    stall_s: float = 30.0
    data_rate_limit_per_minute: int | None = 200
    auth_rate_limit_per_minute: int | None = 1
    auth_errors: int = 0
    auth_stalls: int = 0
    access_token_ttl_s: float = 86400.0
    refresh_token_ttl_s: float = 30 * 86400.0
    page_limit_cap: int = 100
    fail_property_tasks: set[int] = field(default_factory=set)
    echo_token_paths: set[str] = field(default_factory=set)
    shift_while_paging: int = 0
    delete_while_paging: int = 0
    bad_records: set[str] = field(default_factory=set)
    bursts: dict[int | None, Burst] = field(default_factory=dict, repr=False)

    def burst_429(
        self,
        count: int | None = None,
        *,
        seconds: float | None = None,
        retry_after_s: float = 1.0,
        company_id: int | None = None,
    ) -> None:
        """Start a 429 burst: ``count`` requests, or every request for ``seconds``."""
        if (count is None) == (seconds is None):
            raise ValueError("give exactly one of count and seconds")
        if seconds is not None:
            self.bursts[company_id] = Burst(None, time.monotonic() + seconds, seconds)
        else:
            assert count is not None
            self.bursts[company_id] = Burst(count, None, retry_after_s)

    def take_burst(self, company_id: int) -> float | None:
        """If a burst covers this request, consume it and answer seconds until retry_after."""
        for key in (company_id, None):
            burst = self.bursts.get(key)
            if burst is None:
                continue
            if burst.until is not None:
                left = burst.until - time.monotonic()
                if left > 0:
                    return left
                del self.bursts[key]
            elif burst.remaining:
                burst.remaining -= 1
                if burst.remaining == 0:
                    del self.bursts[key]
                return burst.retry_after_s
        return None

    def echoes_token(self, path: str) -> bool:
        """Whether a request of ``path`` answers 422 quoting its token."""
        return any(path.rstrip("/").endswith(end.rstrip("/")) for end in self.echo_token_paths)

    def update(self, **changes: Any) -> None:
        """Set several fields at once, checking names, kinds and types (for ``/_sim/faults``)."""
        known = {f.name for f in fields(self)} - {"bursts"}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        for name, value in changes.items():
            if name == "bad_records":
                kinds = set(value)
                bad = kinds - BAD_RECORD_KINDS - BAD_CHILD_KINDS
                if bad:
                    raise ValueError(f"unknown bad record kinds: {', '.join(sorted(bad))}")
                value = kinds
            elif name == "echo_token_paths":
                value = {str(v) for v in value}
            elif name == "fail_property_tasks":
                value = {int(v) for v in value}
            elif name in ("data_rate_limit_per_minute", "auth_rate_limit_per_minute"):
                value = None if value is None or value == 0 else int(value)
            elif name in (
                "page_limit_cap",
                "shift_while_paging",
                "delete_while_paging",
                "auth_errors",
                "auth_stalls",
            ):
                value = int(value)
            else:
                value = float(value)
            setattr(self, name, value)

    def as_json(self) -> dict[str, Any]:
        """The settings as JSON-ready values (bursts left out)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "bursts":
                continue
            value = getattr(self, f.name)
            out[f.name] = sorted(value) if isinstance(value, set) else value
        return out
