"""Time moving on: records created, changed and deleted.

(``Rates``: how much changes per hour; ``change_records``: what a change does.)
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from typing import Any

from . import details, vocab
from .generate import Builder
from .records import Row, fmt_ts
from .store import TAG_KINDS, CompanyData

__all__ = [
    "EntityRates",
    "Rates",
    "advance_company",
    "change_records",
    "create_records",
    "delete_records",
]


@dataclass
class EntityRates:
    """Per simulated hour, as shares of the entity's current record count."""

    create: float = 0.0
    change: float = 0.0
    delete: float = 0.0


def _rates(create: float, change: float, delete: float) -> Any:
    return field(default_factory=lambda: EntityRates(create, change, delete))


@dataclass
class Rates:
    """How fast each entity's records are created, changed and deleted.

    ``Rates`` gives, per entity, the share of its current records changed and deleted per simulated
    hour, and the number created as a share of the current count (e.g. ``tasks.change = 0.03``:
    3 % of the tasks change per hour). A fractional expected count is rounded up or down at random
    (from the seed), so small companies still see changes over many hours.
    """

    properties: EntityRates = _rates(0.002, 0.01, 0.001)
    reservations: EntityRates = _rates(0.01, 0.02, 0.002)
    tasks: EntityRates = _rates(0.01, 0.03, 0.002)
    people: EntityRates = _rates(0.002, 0.01, 0.001)
    supplies: EntityRates = _rates(0.002, 0.02, 0.001)
    tags: EntityRates = _rates(0.002, 0.005, 0.001)
    # create: comments per open task per hour; delete: share of open tasks' comments
    task_details: EntityRates = _rates(0.02, 0.0, 0.002)

    def as_json(self) -> dict[str, dict[str, float]]:
        return {f.name: vars(getattr(self, f.name)).copy() for f in fields(self)}

    def update(self, changes: dict[str, dict[str, float]]) -> None:
        """Set rates from ``{"tasks": {"change": 0.5}, ...}``."""
        for entity, values in changes.items():
            target = getattr(self, entity, None)
            if not isinstance(target, EntityRates):
                raise ValueError(f"unknown entity {entity!r}")
            for key, value in values.items():
                if key not in ("create", "change", "delete"):
                    raise ValueError(f"unknown rate {key!r}")
                setattr(target, key, float(value))


def _count(rng: random.Random, expected: float) -> int:
    whole = int(expected)
    return whole + (rng.random() < expected - whole)


def _tag_rows(data: CompanyData) -> dict[int, Row]:
    return {tid: row for kind in TAG_KINDS for tid, row in data.tags[kind].items()}


def _population(data: CompanyData, entity: str, property_id: int | None = None) -> list[int]:
    if entity == "tasks":
        pool = data.tasks_by_property.get(property_id, {}) if property_id else data.tasks
        return list(pool)
    if entity == "reservations" and property_id:
        return list(data.reservations_by_property.get(property_id, {}))
    if entity == "tags":
        return list(_tag_rows(data))
    return list(data.rows(entity))


def _touch(row: Row, when: datetime, stamp_updated: bool) -> None:
    row.updated = max(row.updated, when)
    row.blob = None
    if stamp_updated:
        row.data["updated_at"] = fmt_ts(row.updated, row.id % 2 == 1)


def _change_one(
    data: CompanyData, entity: str, record_id: int, rng: random.Random, when: datetime
) -> None:
    if entity == "tasks":
        task = data.tasks.get(record_id)
        if task is None:
            return
        if task.status < 4:
            task.status += 1
            if task.status == 2:
                task.started = max(when, task.created)
            elif task.status == 3:
                task.started = task.started or when
                task.finished = max(when, task.started)
        task.touch(when)
    elif entity == "tags":
        row = _tag_rows(data).get(record_id)
        if row is None:
            return
        row.data["name"] = f"{rng.choice(vocab.TAG_WORDS)} {record_id % 1000}"
        _touch(row, when, False)
    else:
        row = data.rows(entity).get(record_id)
        if row is None:
            return
        d = row.data
        if entity == "properties":
            roll = rng.random()
            if roll < 0.3:
                d["status"] = rng.choice(
                    [s for s in ("active", "inactive", "pending_delete") if s != d["status"]]
                )
            elif roll < 0.6:
                d["name"] = f"{d['name'].split(' (')[0]} (renovated {when.year})"
                d["display"] = f"{d['name']} ({d['city']}, {d['state']})"
            else:
                d["notes"] = {
                    **(d.get("notes") or {}),
                    "general": f"Owner note updated {when.date()}.",
                }
            _touch(row, when, False)
        elif entity == "reservations":
            roll = rng.random()
            if roll < 0.25 and d["status"] == "active":
                d["status"] = "cancelled"
            elif roll < 0.5:
                d["adults"] = rng.randint(1, 6)
            elif roll < 0.75:
                d["checkout_late"] = not d["checkout_late"]
            else:
                d["note"] = rng.choice(vocab.RESERVATION_NOTES[:-1])
            _touch(row, when, True)
        elif entity == "people":
            status = data.person_status.get(record_id, "active")
            if rng.random() < 0.5:
                status = {"invited": "active", "active": "inactive", "inactive": "active"}[status]
                data.person_status[record_id] = status
                d["active"] = status == "active"
            else:
                d["accept_decline_tasks"] = not d["accept_decline_tasks"]
            _touch(row, when, False)
        elif entity == "supplies":
            stock = max(0, d["stock_count"] + rng.randint(-40, 60))
            d["stock_count"] = stock
            status = vocab.STOCK_STATUSES[
                0 if stock > d["low_stock_count"] else (1 if stock else 2)
            ]
            d["type_stock_status"] = {"code": status[0], "name": status[1]}
            _touch(row, when, True)
    data.changed()


def _create_one(
    data: CompanyData, build: Builder, entity: str, when: datetime, property_id: int | None = None
) -> None:
    rng = build.rng
    if entity == "properties":
        row = build.property(when, when)
        row.data["status"] = "active"
        return
    if entity == "people":
        build.person(when, status="invited")
        return
    if entity == "supplies":
        build.supply(when, when)
        return
    if entity == "tags":
        build.tag(rng.choice(TAG_KINDS), when)
        return
    if property_id is None or property_id not in data.properties:
        if not data.properties:
            return
        property_id = rng.choice(list(data.properties))
    prop = data.properties[property_id]
    today = when.date()
    if entity == "reservations":
        checkin = today + timedelta(days=rng.randint(1, 120))
        stay = build.reservation(prop, checkin, rng.randint(2, 7), when, when)
        build.task(
            prop.id,
            kind=1,
            department=0,
            scheduled=date.fromisoformat(stay.data["checkout_date"]),
            created=when,
            now=when,
            linked=stay.id,
            status=0,
        )
    elif entity == "tasks":
        build.task(
            prop.id,
            kind=0,
            department=rng.choice((0, 1, 2, 2, 3)),
            scheduled=today + timedelta(days=rng.randint(0, 30)),
            created=when,
            now=when,
            linked=None,
            status=rng.choice((0, 1)),
        )


def create_records(
    data: CompanyData,
    build: Builder,
    entity: str,
    n: int,
    when: datetime,
    property_id: int | None = None,
) -> None:
    """Create ``n`` records of ``entity`` at ``when`` (tasks, reservations: in that property)."""
    for _ in range(n):
        _create_one(data, build, entity, when, property_id)


def change_records(
    data: CompanyData,
    entity: str,
    n: int,
    rng: random.Random,
    when: datetime,
    property_id: int | None = None,
) -> None:
    """Change ``n`` random records of ``entity`` (of that property, for tasks and reservations).

    What a change does: a property changes status or name or notes; a reservation is cancelled or
    its note, party size or late checkout changes (``updated_at`` moves); a task moves one status
    forward (``started_at``/``finished_at`` set on the way) or, when done, its summary note
    changes (``updated_at`` moves); a person changes status or task acceptance; a supply's stock
    moves (``updated_at`` moves); a tag is renamed. A new reservation comes with its departure
    clean task. A deleted property takes its reservations and tasks with it.
    """
    pool = _population(data, entity, property_id)
    for record_id in rng.sample(pool, min(n, len(pool))):
        _change_one(data, entity, record_id, rng, when)


def delete_records(
    data: CompanyData, entity: str, n: int, rng: random.Random, property_id: int | None = None
) -> None:
    """Delete ``n`` random records of ``entity`` (of that property, for tasks and reservations)."""
    pool = _population(data, entity, property_id)
    for record_id in rng.sample(pool, min(n, len(pool))):
        if entity == "tags":
            for kind in TAG_KINDS:
                if data.tags[kind].pop(record_id, None) is not None:
                    data.changed()
        else:
            data.remove(entity, record_id)


_ORDER = ("properties", "people", "supplies", "tags", "reservations", "tasks")


def advance_company(
    data: CompanyData, rates: Rates, rng: random.Random, start: datetime, end: datetime
) -> dict[str, dict[str, int]]:
    """Apply the events of ``(start, end]`` to ``data``; answers counts per entity and kind.

    Task comments (``rates.task_details``): ``create`` comments per open task per hour are written
    and ``delete`` of the open tasks' comments per hour removed, all at the end of the span and
    without moving any task's ``updated_at`` (see ``details``).
    """
    hours = (end - start).total_seconds() / 3600
    build = Builder(data, rng)
    counts: dict[str, dict[str, int]] = {}
    if hours <= 0:
        return counts
    span = end - start

    def at() -> datetime:
        return start + span * (1 - rng.random())  # in (start, end]

    for entity in _ORDER:
        rate: EntityRates = getattr(rates, entity)
        size = len(_population(data, entity))
        n_change = _count(rng, rate.change * size * hours)
        n_delete = _count(rng, rate.delete * size * hours)
        n_create = _count(rng, rate.create * max(size, 1) * hours)
        pool = _population(data, entity)
        for record_id in rng.sample(pool, min(n_change, len(pool))):
            _change_one(data, entity, record_id, rng, at())
        delete_records(data, entity, n_delete, rng)
        for _ in range(n_create):
            _create_one(data, build, entity, at())
        counts[entity] = {"created": n_create, "changed": n_change, "deleted": n_delete}
    counts["task_details"] = _comment_events(data, rates.task_details, rng, hours, end)
    return counts


def _comment_events(
    data: CompanyData, rate: EntityRates, rng: random.Random, hours: float, when: datetime
) -> dict[str, int]:
    """Comments written on and removed from open tasks; no task's ``updated_at`` moves."""
    open_tasks = details.open_task_ids(data, when)
    written = sum(len(data.comments.get(tid, ())) for tid in open_tasks)
    n_create = _count(rng, rate.create * len(open_tasks) * hours)
    n_delete = _count(rng, rate.delete * written * hours)
    deleted = details.delete_comments(data, rng, n_delete, when)
    created = details.add_comments(data, rng, n_create, when)
    return {"created": created, "changed": 0, "deleted": deleted}
