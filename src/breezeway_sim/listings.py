"""Which records a listing request selects, and in which order.

The choices the contract leaves open are in the comment below and in ``query``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from operator import attrgetter
from typing import Any

import orjson

from . import vocab
from .query import compare, parse_instant, parse_int, sort_items, unprocessable
from .records import Row, TaskRow, task_blob
from .store import CompanyData

__all__ = [
    "FIELDS",
    "select_people",
    "select_properties",
    "select_reservations",
    "select_supplies",
    "select_tasks",
    "task_property",
]

FIELDS: dict[str, frozenset[str]] = {
    "properties": frozenset(
        "id company_id name status address1 address2 building city state zipcode country latitude"
        " longitude display bedrooms bathrooms living_area year_built wifi_name wifi_password"
        " reference_company_id reference_external_property_id reference_property_id notes"
        " groups photos created_at updated_at".split()
    ),
    "reservations": frozenset(
        "id property_id status checkin_date checkin_time checkin_early checkout_date checkout_time"
        " checkout_late access_code guide_url note adults children pets source guests tags flags"
        " type_guest type_stay type_reservation reference_external_property_id"
        " reference_property_id reference_reservation_id created_at updated_at".split()
    ),
    "tasks": frozenset(
        "id home_id reference_property_id name description type_department type_priority"
        " type_task_status scheduled_date scheduled_time paused created_at updated_at started_at"
        " finished_at created_by finished_by requested_by subdepartment template_id"
        " task_series_id parent_task_id linked_reservation assignments costs supplies photos"
        " task_tags rate_type rate_paid total_time estimated_time estimated_rate total_cost"
        " billable itemized_cost bill_to report_url summary".split()
    ),
    "supplies": frozenset(
        "id company_id name description size internal_id unit_cost stock_count low_stock_alert"
        " low_stock_count supply_category_id type_stock_status created_at updated_at".split()
    ),
}

PROPERTY_STATUSES = frozenset({"active", "inactive", "pending_delete", "deleted"})
PERSON_STATUSES = frozenset({"active", "invited", "inactive"})
OPS = ("lt", "le", "gt", "ge")


# Functions here take a company's ``CompanyData`` and the query parameters and answer a sorted
# list of rows (or raise ``ApiError``); the app turns it into the page. Filters follow
# BREEZEWAY_API.md section 3; the choices the contract leaves open are in ``query``'s comment
# and here:
#
# * a property, person or task status filter with an unknown value is a 422;
# * ``GET /task/`` with ``home_id`` of a property the company does not have (removed, or another
#   company's) answers an empty listing, not an error; with both ``home_id`` and
#   ``reference_property_id`` both must match;
# * people come sorted by id; tag lists by id.
def row_value(field: str) -> Callable[[Row], Any]:
    if field == "created_at":
        return lambda r: r.created
    if field == "updated_at":
        return lambda r: r.updated
    if field == "id":
        return lambda r: r.id
    return lambda r: r.data.get(field)


def _status_filter(params: Mapping[str, str], allowed: frozenset[str]) -> str | None:
    status = params.get("status")
    if status is None or status == "":
        return None
    if status not in allowed:
        raise unprocessable(f"status: Must be one of: {', '.join(sorted(allowed))}.")
    return status


def select_properties(
    data: CompanyData, params: Mapping[str, str], sort_by: str, desc: bool
) -> list[Row]:
    status = _status_filter(params, PROPERTY_STATUSES)
    rows = data.properties.values()
    if status is not None:
        rows = [r for r in rows if r.data.get("status") == status]
    return sort_items(rows, row_value(sort_by), desc)


def select_supplies(
    data: CompanyData, params: Mapping[str, str], sort_by: str, desc: bool
) -> list[Row]:
    return sort_items(data.supplies.values(), row_value(sort_by), desc)


def select_people(data: CompanyData, params: Mapping[str, str]) -> list[Row]:
    status = _status_filter(params, PERSON_STATUSES)
    rows = [
        r
        for pid, r in data.people.items()
        if status is None or data.person_status.get(pid) == status
    ]
    return sorted(rows, key=lambda r: r.id)


_RES_FIELDS: dict[str, Callable[[Row], Any]] = {
    "checkin_date": lambda r: date.fromisoformat(r.data["checkin_date"]),
    "checkout_date": lambda r: date.fromisoformat(r.data["checkout_date"]),
    "created_at": lambda r: r.created,
    "updated_at": lambda r: r.updated,
}


def select_reservations(
    data: CompanyData, params: Mapping[str, str], sort_by: str, desc: bool, today: date
) -> list[Row]:
    """Reservations; without any date filter only those with checkout today or later."""
    property_id = parse_int(params, "property_id")
    bounds = []
    for field, getter in _RES_FIELDS.items():
        for op in OPS:
            raw = params.get(f"{field}_{op}")
            if raw is not None:
                bounds.append((getter, op, parse_instant(f"{field}_{op}", raw)))
    if not bounds:
        bounds.append((_RES_FIELDS["checkout_date"], "ge", today))
    pool = (
        data.reservations_by_property.get(property_id, {}).values()
        if property_id is not None
        else data.reservations.values()
    )
    rows = [r for r in pool if all(compare(getter(r), op, bound) for getter, op, bound in bounds)]
    return sort_items(rows, row_value(sort_by), desc)


_TASK_SLOTS: dict[str, Callable[[TaskRow], Any]] = {
    "id": lambda t: t.id,
    "home_id": lambda t: t.home_id,
    "created_at": lambda t: t.created,
    "updated_at": lambda t: t.updated,
    "scheduled_date": lambda t: t.scheduled,
    "started_at": lambda t: t.started,
    "finished_at": lambda t: t.finished,
    "type_department": lambda t: vocab.DEPARTMENTS[t.department],
}
_TASK_NOT_NULL = {
    "id": attrgetter("id"),
    "home_id": attrgetter("home_id", "id"),
    "created_at": attrgetter("created", "id"),
    "updated_at": attrgetter("updated", "id"),
    "scheduled_date": attrgetter("scheduled", "id"),
    "type_department": attrgetter("department", "id"),  # index order is name order
}
_TASK_RANGES = ("scheduled_date", "created_at", "finished_at", "updated_at")


def _range(name: str, text: str) -> tuple[Any, Any]:
    parts = text.split(",")
    if len(parts) != 2:
        raise unprocessable(f"{name}: Length must be 2")
    return parse_instant(name, parts[0]), parse_instant(name, parts[1])


def task_property(data: CompanyData, params: Mapping[str, str]) -> int | None:
    """The property a task listing is about: None when the company has no such property."""
    home_id = parse_int(params, "home_id")
    reference = params.get("reference_property_id") or None
    if home_id is None and reference is None:
        raise unprocessable("home_id or reference_property_id is required")
    if reference is not None:
        matches = [
            pid
            for pid, ref in data.ctx.property_refs.items()
            if ref == reference and pid in data.properties
        ]
        found = matches[0] if matches else None
        if home_id is not None and found != home_id:
            return None
        return found
    return home_id if home_id in data.properties else None


def select_tasks(
    data: CompanyData, property_id: int | None, params: Mapping[str, str], sort_by: str, desc: bool
) -> list[TaskRow]:
    """The tasks of one property, filtered and sorted."""
    checks = []
    for name in _TASK_RANGES:
        raw = params.get(name)
        if raw is not None:
            low, high = _range(name, raw)
            checks.append((_TASK_SLOTS[name], low, high))
    department = params.get("type_department") or None
    if property_id is None:
        return []
    tasks: Any = data.tasks_by_property.get(property_id, {}).values()
    if department is not None:
        if department not in vocab.DEPARTMENTS:
            return []
        dept_index = vocab.DEPARTMENTS.index(department)
        tasks = [t for t in tasks if t.department == dept_index]
    if checks:
        tasks = [
            t
            for t in tasks
            if all(compare(g(t), "ge", lo) and compare(g(t), "le", hi) for g, lo, hi in checks)
        ]
    fast = _TASK_NOT_NULL.get(sort_by)
    if fast is not None:  # the hot path: no nulls, so a plain C-level key will do
        return sorted(tasks, key=fast, reverse=desc)
    getter = _TASK_SLOTS.get(sort_by)
    if getter is None:
        ctx = data.ctx

        def getter(t: TaskRow) -> Any:
            return orjson.loads(task_blob(ctx, t)).get(sort_by)

    return sort_items(tasks, getter, desc)
