"""Injected bad records (the ``bad_records`` fault): what each kind looks like.

The kinds are listed in ``faults``; how each is built: ``bad_records_for``.
"""

from __future__ import annotations

import copy
from typing import Any

from .store import CompanyData

__all__ = ["BAD_REQUIREMENTS", "CHILD_ARRAYS", "KIND_ORDER", "bad_records_for"]

KIND_ORDER = (
    "nul",
    "wrong_types",
    "missing_fields",
    "huge_strings",
    "unknown_property",
    "no_id",
    "child_no_id",
    "child_not_object",
    "requirements_object",
)
# The embedded array of each entity that the child kinds spoil.
CHILD_ARRAYS = {"properties": "photos", "reservations": "guests", "tasks": "assignments"}
BAD_REQUIREMENTS = {"section_name": "Kitchen", "action": ["Wipe counters"], "response": None}
HUGE = 1_000_000

_PARENT_KEY = {"reservations": "property_id", "tasks": "home_id"}
_TEXT_FIELD = {
    "properties": "name",
    "reservations": "note",
    "tasks": "description",
    "people": "first_name",
    "supplies": "name",
}

_WRONG_TYPES: dict[str, dict[str, Any]] = {
    "properties": {
        "bedrooms": "three",
        "bathrooms": "two and a half",
        "latitude": {"deg": 36},
        "year_built": "nineteen-ninety",
        "living_area": [1200],
        "status": 5,
        "groups": "none",
        "notes": "see office",
    },
    "reservations": {
        "checkin_date": 20260501,
        "checkout_date": "soon",
        "adults": "two",
        "guests": "none",
        "created_at": 12345,
        "updated_at": "yesterday",
        "type_stay": "standard",
    },
    "tasks": {
        "scheduled_date": 20260501,
        "created_at": 12345,
        "updated_at": "yesterday",
        "assignments": "none",
        "type_task_status": "done",
        "total_cost": "n/a",
        "linked_reservation": "HM123",
    },
    "people": {
        "active": "yes",
        "emails": "someone@example.com",
        "availability": [],
        "type_role": 3,
    },
    "supplies": {
        "unit_cost": "cheap",
        "stock_count": "many",
        "created_at": 0,
        "type_stock_status": 1,
    },
}


def _with_nul(value: Any) -> Any:
    if isinstance(value, str) and value:
        return value[:1] + "\x00" + value[1:]
    if isinstance(value, dict):
        return {k: _with_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_nul(v) for v in value]
    return value


def bad_records_for(
    data: CompanyData, entity: str, kinds: set[str], template: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The injected records of ``entity`` for the set ``kinds`` (``duplicate_id`` excluded).

    Each kind except ``duplicate_id`` is one extra record built from a real record of the listing
    (its template) with a fresh id from the company's bad-record range, appended after the real
    records of the listing. ``duplicate_id`` serves the listing's first record a second time, right
    after itself. See ``faults`` for the list of kinds.

    The child kinds spoil one item of a record's embedded array (the parent itself is valid):
    ``child_no_id`` (properties' ``photos``, tasks' ``assignments``: the first item loses its id),
    ``child_not_object`` (a string first in properties' ``photos``, reservations' ``guests``,
    tasks' ``photos``) and ``requirements_object`` (a task whose requirements endpoint answers an
    object instead of a list). Every injected task answers its details endpoints (``[]`` unless
    ``requirements_object``).
    """
    out: list[dict[str, Any]] = []
    base: dict[str, Any] = template if template is not None else {"id": 0}
    parent_key = _PARENT_KEY.get(entity)
    for n, kind in enumerate(KIND_ORDER, start=1):
        if kind not in kinds:
            continue
        bad_id = data.bad_id(n)
        record: dict[str, Any]
        if kind == "nul":
            record = _with_nul(copy.deepcopy(base))
            record["id"] = bad_id
            if parent_key and parent_key in base:
                record[parent_key] = base[parent_key]
        elif kind == "wrong_types":
            record = {**copy.deepcopy(base), **_WRONG_TYPES.get(entity, {}), "id": bad_id}
        elif kind == "missing_fields":
            record = {"id": bad_id}
            if parent_key and parent_key in base:
                record[parent_key] = base[parent_key]
            elif "company_id" in base:
                record["company_id"] = base["company_id"]
        elif kind == "huge_strings":
            record = {**copy.deepcopy(base), "id": bad_id}
            record[_TEXT_FIELD.get(entity, "name")] = "x" * HUGE
        elif kind == "unknown_property":
            if entity != "reservations":
                continue
            record = {**copy.deepcopy(base), "id": bad_id, "property_id": data.company.id_base + 99}
        elif kind == "child_no_id":
            if entity not in ("properties", "tasks"):
                continue
            record = {**copy.deepcopy(base), "id": bad_id}
            array = CHILD_ARRAYS[entity]
            items = [dict(item) for item in record.get(array) or [{"name": "no id"}]]
            items[0].pop("id", None)
            record[array] = items
        elif kind == "child_not_object":
            if entity not in CHILD_ARRAYS:
                continue
            record = {**copy.deepcopy(base), "id": bad_id}
            array = "photos" if entity == "tasks" else CHILD_ARRAYS[entity]
            loose = (
                "Jane Doe" if entity == "reservations" else "https://photos.example.com/loose.jpg"
            )
            record[array] = [loose, *(record.get(array) or [])]
        elif kind == "requirements_object":
            if entity != "tasks":
                continue
            # a valid task; its GET /task/{id}/requirements answers BAD_REQUIREMENTS
            record = {**copy.deepcopy(base), "id": bad_id}
        else:  # no_id
            record = copy.deepcopy(base)
            record.pop("id", None)
            record[_TEXT_FIELD.get(entity, "name")] = "record without an id"
        out.append(record)
    return out
