"""Record storage and serialization for the simulator.

Two kinds of stored record: ``Row`` (JSON as served) and ``TaskRow`` (compact state).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import orjson

from . import vocab

__all__ = [
    "Row",
    "TaskContext",
    "TaskRow",
    "external_reservation_id",
    "fmt_ts",
    "render_task",
    "row_blob",
    "dumps_compact",
    "task_blob",
]


def fmt_ts(dt: datetime | None, zoned: bool) -> str | None:
    """An aware UTC datetime as ISO text, with ``+00:00`` or without a zone (UTC implied).

    Timestamps are emitted with a zone (``+00:00``) or without one (UTC implied), alternating by
    record id and field, as the contract allows both.
    """
    if dt is None:
        return None
    text = dt.replace(tzinfo=None).isoformat()
    return text + "+00:00" if zoned else text


def fmt_duration(seconds: int) -> str:
    """Seconds as ``H:MM:SS``."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def external_reservation_id(reservation_id: int) -> str:
    """The PMS-side id a reservation carries (``reference_reservation_id``)."""
    return f"HM{(reservation_id * 7919) % 100_000_000:08d}"


class Row:
    """A stored non-task record: its API form plus the times used to filter and sort it.

    ``Row``: properties, reservations, people, supplies and tags. ``data`` is the record exactly
    as the API serializes it (JSON-ready: str, int, float, bool, None, list, dict), ``created``
    and ``updated`` are aware UTC datetimes used for filters and sorting (a property carries no
    timestamps in its JSON, but still has them here for the default ``created_at`` sort).
    """

    __slots__ = ("id", "created", "updated", "data", "blob", "parent")

    def __init__(
        self,
        id: int,
        created: datetime,
        updated: datetime,
        data: dict[str, Any],
        parent: int | None = None,
    ) -> None:
        self.id = id
        self.created = created
        self.updated = updated
        self.data = data
        self.blob: bytes | None = None
        self.parent = parent  # property id for reservations, None otherwise


def dumps_compact(obj: Any) -> bytes:
    """``orjson.dumps`` copied into an exact-size object: orjson's result keeps its
    over-allocated buffer, about 16 kB, which adds up when thousands are cached."""
    return memoryview(orjson.dumps(obj)).tobytes()


def row_blob(row: Row) -> bytes:
    """The row's serialized JSON, cached until the row changes (``row.blob = None``)."""
    blob = row.blob
    if blob is None:
        blob = row.blob = dumps_compact(row.data)
    return blob


class TaskRow:
    """A task's compact state; ``render_task`` turns it into the API record.

    ``TaskRow``: tasks are the widest and most numerous entity (about 1.4 kB of JSON each), so a
    task is stored as a compact state and rendered to a dict only when served. Rendering is a
    pure function of the state, seeded by ``TaskRow.seed``; a change bumps ``version`` and moves
    ``updated``. The serialized bytes are cached on the row until the next change.
    """

    __slots__ = (
        "id",
        "home_id",
        "seed",
        "version",
        "kind",
        "department",
        "status",
        "created",
        "updated",
        "scheduled",
        "started",
        "finished",
        "linked",
        "child_base",
        "blob",
    )

    def __init__(
        self,
        *,
        id: int,
        home_id: int,
        seed: int,
        kind: int,
        department: int,
        status: int,
        created: datetime,
        updated: datetime,
        scheduled: date,
        started: datetime | None,
        finished: datetime | None,
        linked: int | None,
        child_base: int,
    ) -> None:
        self.id = id
        self.home_id = home_id
        self.seed = seed
        self.version = 0
        self.kind = kind  # 0 any task, 1 departure clean, 2 pre-arrival inspection
        self.department = department  # index into vocab.DEPARTMENTS
        self.status = status  # index into vocab.TASK_STATUSES
        self.created = created
        self.updated = updated
        self.scheduled = scheduled
        self.started = started
        self.finished = finished
        self.linked = linked  # reservation id or None
        self.child_base = child_base  # first of 16 ids reserved for this task's child rows
        self.blob: bytes | None = None

    def touch(self, when: datetime) -> None:
        """Mark a change: ``updated_at`` moves, the cached JSON is dropped."""
        self.version += 1
        self.updated = max(when, self.updated)
        self.blob = None


@dataclass
class TaskContext:
    """Company data a task render reads. Only facts that never change after they are made,
    so that a task's JSON changes only when the task itself changes."""

    company_id: int
    property_refs: dict[int, str] = field(default_factory=dict)  # property id -> reference id
    people: tuple[tuple[int, str, str], ...] = ()  # (id, full name, employee code)
    supplies: tuple[tuple[int, str, float], ...] = ()  # (id, name, unit cost)
    tags: tuple[tuple[int, str], ...] = ()  # task tags (id, name)


_SUMMARY_NOTES = (
    None,
    "All done, no issues.",
    "Left extra towels for the next guests.",
    "Noticed a small scratch on the dining table; photo attached.",
    "Guest left early; unit in good shape.",
    "Running behind, will finish tomorrow morning.",
)
_CAPTIONS = ("Kitchen", "Living room", "Bathroom", "Bedroom", "Exterior")
_HOURLY = (25.0, 30.0, 35.0, 40.0, 45.0)
_BILL_TO = ("owner", "guest", "company", None)


def render_task(ctx: TaskContext, t: TaskRow) -> dict[str, Any]:
    """A task's API record, a pure function of its state and the company's fixed facts."""
    r = random.Random(t.seed).random  # one C call per draw: this runs for every task served

    def pick(seq: Any) -> Any:
        return seq[int(r() * len(seq))]

    tid = t.id
    dept = vocab.DEPARTMENTS[t.department]
    code, status_name, stage = vocab.TASK_STATUSES[t.status]
    finished = t.finished is not None
    if t.kind == 1:
        name = "Departure Clean"
    elif t.kind == 2:
        name = "Pre-Arrival Inspection"
    else:
        name = pick(vocab.TASK_NAMES[dept])
    zoned_a = tid % 2 == 0
    zoned_b = not zoned_a
    base = t.child_base
    people = ctx.people
    assignments = []
    if people:
        if finished:
            user_status = "finished"
        elif t.status >= 2:
            user_status = "accepted"
        else:
            user_status = "assigned" if t.status == 1 else "pending"
        for k in range(1 + (r() < 0.3)):
            pid, pname, pcode = pick(people)
            assignments.append(
                {
                    "id": base + k,
                    "assignee_id": pid,
                    "name": pname,
                    "employee_code": pcode,
                    "expires_at": None
                    if r() < 0.8
                    else fmt_ts(t.created + timedelta(days=30), zoned_a),
                    "type_task_user_status": user_status,
                }
            )
        if len(assignments) > 1 and t.status >= 2 and t.seed & 1:
            assignments.pop()  # the second assignee drops off once work starts
    labor_minutes = 30 + 5 * int(r() * 30)
    hourly = pick(_HOURLY)
    costs = []
    if finished:
        for k in range(pick((0, 0, 1, 2))):
            ctype = pick(vocab.COST_TYPES)
            costs.append(
                {
                    "id": base + 4 + k,
                    "cost": round(5 + r() * 145, 2),
                    "description": f"{ctype[1]} for {name.lower()}",
                    "type_cost": {"code": ctype[0], "name": ctype[1]},
                    "created_at": fmt_ts(t.finished, zoned_b),
                }
            )
    supplies = []
    if ctx.supplies and t.department in (0, 2):  # housekeeping, maintenance
        for k in range(pick((0, 1, 2, 3))):
            sid, sname, unit = pick(ctx.supplies)
            qty = 1 + int(r() * 6)
            supplies.append(
                {
                    "id": base + 6 + k,
                    "supply_id": sid,
                    "name": sname,
                    "quantity": qty,
                    "unit_cost": unit,
                    "total_price": round(unit * qty, 2),
                }
            )
    photos = []
    if finished:
        for k in range(pick((0, 1, 2, 3))):
            photos.append(
                {
                    "id": base + 9 + k,
                    "url": f"https://photos.example.com/t/{tid:x}{k}{t.seed % 9973:04x}.jpg",
                    "caption": pick(_CAPTIONS),
                }
            )
        if t.version % 2 and photos:
            photos.pop()  # every other change of a finished task removes its last photo
    tags: list[dict[str, Any]] = []
    if ctx.tags:
        for _ in range(pick((0, 0, 1, 2))):
            tag_id, tag_name = pick(ctx.tags)
            if all(tag["id"] != tag_id for tag in tags):
                tags.append({"id": tag_id, "name": tag_name})
    cost_total = round(sum(c["cost"] for c in costs) + sum(s["total_price"] for s in supplies), 2)
    labor = round(hourly * labor_minutes / 60, 2) if finished else 0.0
    sub_index = 0 if t.kind else 1 + int(r() * (len(vocab.SUBDEPARTMENTS) - 1))
    linked = (
        {"id": t.linked, "external_reservation_id": external_reservation_id(t.linked)}
        if t.linked is not None
        else None
    )

    def person() -> dict[str, Any] | None:
        if not people:
            return None
        pid, pname, _code = pick(people)
        return {"id": pid, "name": pname}

    return {
        "id": tid,
        "home_id": t.home_id,
        "reference_property_id": ctx.property_refs.get(t.home_id),
        "name": name,
        "description": pick(vocab.TASK_DESCRIPTIONS),
        "type_department": dept,
        "type_priority": pick(vocab.TASK_PRIORITIES),
        "type_task_status": {"code": code, "name": status_name, "stage": stage},
        "scheduled_date": t.scheduled.isoformat(),
        "scheduled_time": None if r() < 0.2 else f"{8 + int(r() * 9):02d}:00:00",
        "paused": t.status == 2 and r() < 0.1,
        "created_at": fmt_ts(t.created, zoned_a),
        "updated_at": fmt_ts(t.updated, zoned_b),
        "started_at": fmt_ts(t.started, zoned_a),
        "finished_at": fmt_ts(t.finished, zoned_b),
        "created_by": person(),
        "finished_by": person() if finished else None,
        "requested_by": person() if r() < 0.3 else None,
        "subdepartment": {"id": 100 + sub_index, "name": vocab.SUBDEPARTMENTS[sub_index]},
        "template_id": 5000 + t.department * 10 + t.kind if r() < 0.7 else None,
        "task_series_id": 70000 + t.home_id % 1000 if t.kind == 0 and r() < 0.2 else None,
        "parent_task_id": None,
        "linked_reservation": linked,
        "assignments": assignments,
        "costs": costs,
        "supplies": supplies,
        "photos": photos,
        "task_tags": tags,
        "rate_type": "hourly" if hourly < 40 else "flat",
        "rate_paid": f"{labor:.2f} USD",
        "total_time": fmt_duration(labor_minutes * 60 if finished else 0),
        "estimated_time": fmt_duration(labor_minutes * 60 + 300 * int(r() * 9) - 900),
        "estimated_rate": hourly,
        "total_cost": round(labor + cost_total, 2),
        "billable": r() < 0.4,
        "itemized_cost": {"labor": labor, "materials": float(cost_total), "other": 0.0},
        "bill_to": pick(_BILL_TO),
        "report_url": f"https://app.example.com/r/{tid:x}{t.seed % 65521:04x}",
        # The note is what changes when a finished task changes again.
        "summary": {"note": _SUMMARY_NOTES[(t.seed + t.version * 7) % len(_SUMMARY_NOTES)]},
    }


def task_blob(ctx: TaskContext, t: TaskRow) -> bytes:
    """The task's serialized JSON, cached until the task changes."""
    blob = t.blob
    if blob is None:
        blob = t.blob = dumps_compact(render_task(ctx, t))
    return blob
