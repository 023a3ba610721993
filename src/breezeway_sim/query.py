"""Query-string handling shared by the listing endpoints: errors, paging, dates, sorting.

The choices the contract leaves open: the comment above ``ApiError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

__all__ = [
    "ApiError",
    "compare",
    "page_envelope",
    "parse_instant",
    "parse_int",
    "parse_paging",
    "sort_items",
]


# Decided here, where the contract is silent:
#
# * ``page`` and ``limit`` must be integers >= 1, else 422; ``limit`` above the cap is lowered to
#   it, and the envelope answers the ``limit`` used. ``total_pages`` is 0 for an empty listing.
# * ``sort_order`` is ``asc`` or ``desc`` (else 422). ``sort_by`` must name a field of the record
#   (else 422). Ties are broken by ``id`` in the same direction. Nulls sort last ascending and
#   first descending (as in PostgreSQL). Timestamps sort by instant, whatever their text form.
# * Date filters take ``YYYY-MM-DD`` or an ISO date-time (a naive one is UTC). A date-time field
#   compared with a date compares its UTC date (``updated_at_le=2026-05-01`` includes all of that
#   day); a date field compared with a date-time compares the date-time's date.
class ApiError(Exception):
    """An answer other than 200: ``status`` with body ``{"error", "description"}``."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status = status
        self.error = error
        self.description = description


def unprocessable(description: str) -> ApiError:
    return ApiError(422, "Unprocessable Entity", description)


def parse_int(params: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    """An integer parameter, or ``default`` when absent; 422 when not an integer."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise unprocessable(f"{name}: Not a valid integer.") from None


def parse_paging(
    params: Mapping[str, str], cap: int, fields: frozenset[str]
) -> tuple[int, int, str, bool]:
    """``(page, limit, sort_by, descending)`` from the query string."""
    page = parse_int(params, "page", 1)
    limit = parse_int(params, "limit", 100)
    assert page is not None and limit is not None
    if page < 1:
        raise unprocessable("page: Must be greater than or equal to 1.")
    if limit < 1:
        raise unprocessable("limit: Must be greater than or equal to 1.")
    sort_by = params.get("sort_by") or "created_at"
    if sort_by not in fields:
        raise unprocessable(f"sort_by: Invalid field {sort_by!r}.")
    order = (params.get("sort_order") or "desc").lower()
    if order not in ("asc", "desc"):
        raise unprocessable("sort_order: Must be one of: asc, desc.")
    return page, min(limit, max(1, cap)), sort_by, order == "desc"


def parse_instant(name: str, text: str) -> date | datetime:
    """``YYYY-MM-DD`` as a date, an ISO date-time as an aware UTC datetime; else 422."""
    text = text.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise unprocessable(f"{name}: Not a valid date or datetime.") from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
}


def compare(value: date | datetime | None, op: str, bound: date | datetime) -> bool:
    """``value op bound`` for a record's date or datetime (None never matches)."""
    if value is None:
        return False
    if isinstance(value, datetime):
        if not isinstance(bound, datetime):
            return _OPS[op](value.date(), bound)
        return _OPS[op](value, bound)
    if isinstance(bound, datetime):
        bound = bound.date()
    return _OPS[op](value, bound)


def _sort_key(value: Any) -> tuple[int, Any]:
    # Ranks keep mixed types comparable (latitude is a number or a string).
    if value is None:
        return (3, 0)
    if isinstance(value, int | float | date):  # a field's dates are all dates or all datetimes
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    return (2, repr(value))


def sort_items(items: Iterable[Any], value_of: Callable[[Any], Any], descending: bool) -> list[Any]:
    """Items sorted by ``value_of(item)`` then ``item.id``; nulls last ascending."""
    return sorted(items, key=lambda it: (_sort_key(value_of(it)), it.id), reverse=descending)


def page_envelope(
    items: list[Any], page: int, limit: int, blobs: Callable[[list[Any]], list[bytes]]
) -> bytes:
    """The paging envelope with the page's records, as JSON bytes."""
    total = len(items)
    total_pages = -(-total // limit)
    chunk = items[(page - 1) * limit : page * limit]
    head = b'{"limit":%d,"page":%d,"total_pages":%d,"total_results":%d,"results":[' % (
        limit,
        page,
        total_pages,
        total,
    )
    return head + b",".join(blobs(chunk)) + b"]}"
