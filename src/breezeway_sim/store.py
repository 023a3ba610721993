"""One company's records, with the indexes the listing endpoints need.

(``CompanyData``: every mutation through its methods.)
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from .companies import Company
from .records import Row, TaskContext, TaskRow

if TYPE_CHECKING:
    from .details import Comment

__all__ = ["ENTITIES", "TAG_KINDS", "CompanyData"]

ENTITIES = ("properties", "reservations", "tasks", "people", "supplies", "tags")
TAG_KINDS = ("task", "property", "reservation")

# Offsets inside a company's id range (Company.id_base + offset + n).
ID_OFFSETS = {
    "properties": 100_000,
    "people": 200_000,
    "supplies": 300_000,
    "tags": 400_000,
    "reservations": 1_000_000,
    "tasks": 3_000_000,
    "children": 6_000_000,
    "comments": 8_000_000,
    "old_reservations": 9_000_000,
    "bad": 9_900_000,
}


class CompanyData:
    """The records that exist now for one company, indexed for the API's listings.

    ``CompanyData`` holds the current records of a company (nothing else: deleted records are
    gone). Every mutation goes through its methods, which keep the per-property indexes right and
    bump ``version`` (listing caches are keyed by it).

    A removed property takes its reservations and tasks with it, a removed task its comments (decided here: the simplest
    consistent rule; its tasks then answer 404 on ``GET /task/{id}``).
    """

    def __init__(self, company: Company) -> None:
        self.company = company
        self.properties: dict[int, Row] = {}
        self.reservations: dict[int, Row] = {}
        self.reservations_by_property: dict[int, dict[int, Row]] = {}
        self.tasks: dict[int, TaskRow] = {}
        self.tasks_by_property: dict[int, dict[int, TaskRow]] = {}
        self.comments: dict[int, list[Comment]] = {}  # by task id (see ``details``)
        self.people: dict[int, Row] = {}
        self.person_status: dict[int, str] = {}  # active, invited, inactive
        self.supplies: dict[int, Row] = {}
        self.tags: dict[str, dict[int, Row]] = {kind: {} for kind in TAG_KINDS}
        self.ctx = TaskContext(company_id=company.company_id)
        self.version = 0
        self._next: dict[str, int] = {}
        self.query_cache: OrderedDict[tuple[Any, ...], tuple[int, list[Any]]] = OrderedDict()

    # ids

    def next_id(self, kind: str, step: int = 1) -> int:
        """A fresh id for ``kind`` (an ``ID_OFFSETS`` key); ``step`` reserves a block."""
        n = self._next.get(kind, 1)
        self._next[kind] = n + step
        return self.company.id_base + ID_OFFSETS[kind] + n

    def old_reservation_id(self, n: int) -> int:
        """An id of a reservation so old that no listing returns it."""
        return self.company.id_base + ID_OFFSETS["old_reservations"] + n

    def bad_id(self, n: int) -> int:
        """Ids of injected bad records: never used by a real record."""
        return self.company.id_base + ID_OFFSETS["bad"] + n

    def changed(self) -> None:
        self.version += 1

    # mutations

    def add_property(self, row: Row, reference_property_id: str) -> None:
        self.properties[row.id] = row
        self.reservations_by_property.setdefault(row.id, {})
        self.tasks_by_property.setdefault(row.id, {})
        self.ctx.property_refs[row.id] = reference_property_id
        self.changed()

    def remove_property(self, property_id: int) -> None:
        if self.properties.pop(property_id, None) is None:
            return
        for rid in self.reservations_by_property.pop(property_id, {}):
            self.reservations.pop(rid, None)
        for tid in self.tasks_by_property.pop(property_id, {}):
            self.tasks.pop(tid, None)
            self.comments.pop(tid, None)
        self.changed()

    def add_reservation(self, row: Row) -> None:
        assert row.parent is not None
        self.reservations[row.id] = row
        self.reservations_by_property.setdefault(row.parent, {})[row.id] = row
        self.changed()

    def remove_reservation(self, reservation_id: int) -> None:
        row = self.reservations.pop(reservation_id, None)
        if row is not None:
            self.reservations_by_property.get(row.parent or 0, {}).pop(reservation_id, None)
            self.changed()

    def add_task(self, task: TaskRow) -> None:
        self.tasks[task.id] = task
        self.tasks_by_property.setdefault(task.home_id, {})[task.id] = task
        self.changed()

    def remove_task(self, task_id: int) -> None:
        task = self.tasks.pop(task_id, None)
        if task is not None:
            self.tasks_by_property.get(task.home_id, {}).pop(task_id, None)
            self.comments.pop(task_id, None)
            self.changed()

    def rows(self, entity: str) -> dict[int, Row]:
        """The stored rows of a non-task, non-tag entity."""
        if entity == "properties":
            return self.properties
        if entity == "reservations":
            return self.reservations
        if entity == "people":
            return self.people
        if entity == "supplies":
            return self.supplies
        raise KeyError(entity)

    def remove(self, entity: str, record_id: int) -> None:
        """Delete one record of ``entity`` (not tags)."""
        if entity == "properties":
            self.remove_property(record_id)
        elif entity == "reservations":
            self.remove_reservation(record_id)
        elif entity == "tasks":
            self.remove_task(record_id)
        else:
            rows = self.rows(entity)
            if rows.pop(record_id, None) is not None:
                self.person_status.pop(record_id, None)
                self.changed()
