"""Child tables: a parent's embedded arrays (and a task's fetched details) stored as row sets.

(``ChildSpec`` describes a child table, ``ChildWriter`` replaces its sets).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from breezeway_daemon.db.batch import STEP, Row
from breezeway_daemon.db.entity_table import SCHEMA, EntityTable
from breezeway_daemon.db.rejections import Rejection, store_rejections
from breezeway_daemon.entities import Column, ColumnType
from breezeway_daemon.records import (
    BIGINT_MAX,
    BIGINT_MIN,
    ColumnReader,
    RecordRejected,
    column_reader,
    dumps,
    serialize,
    to_bigint,
)

NO_DEFAULTS: Mapping[str, Any] = {}
Derived = tuple[tuple[str, Callable[[Mapping[str, Any]], Any]], ...]


@dataclass(frozen=True)
class ChildSpec:
    """One child table: where its items come from and how they are keyed and typed.

    Children are described as data, one ``ChildSpec`` per table (the idea of dlt's rest_api child
    resources): the parent entity, the array's field in the parent record (or ``None`` for an array
    fetched on its own, the task details), whether items are keyed by their own id or by their
    position, and the typed columns analysts query. See migrations/005.
    """

    table: str
    parent: str  # the parent entity
    parent_column: str  # the column holding the parent's id
    source: str | None  # the parent record's array field; None: fetched separately
    id_column: str | None = "id"  # the column of the item's own ``id``; None: keyed by position
    columns: tuple[Column, ...] = ()
    derived: Derived = ()  # columns computed from the item (arrays, counts)

    @functools.cached_property
    def reader(self) -> ColumnReader:
        return column_reader(self.columns)

    @property
    def copy_columns(self) -> tuple[str, ...]:
        own = (self.id_column,) if self.id_column else ()
        typed = tuple(c.name for c in self.columns) + tuple(name for name, _ in self.derived)
        return ("region_code", self.parent_column, *own, "position", *typed, "raw")

    @functools.cached_property
    def replace_statements(self) -> tuple[str, str]:
        """The staging table's DDL, and the statement that makes the stored children of the
        staged rows' parents equal to the staged rows (``$1`` the region, ``$2`` the parents).

        Only what differs is written: a child no longer in its set is deleted, a new one
        inserted, a changed one updated in place, an unchanged one left alone. An update
        keeps the parent key, so it needs no foreign-key check; that check (about 4 us a
        row) and the rewrite are what a changed parent's unchanged children used to cost.
        The staged rows are consumed by the statement itself."""
        table, staging, parent = (
            f"{SCHEMA}.{self.table}",
            f"staging_{self.table}",
            self.parent_column,
        )
        own = self.id_column or "position"
        columns = ", ".join(self.copy_columns)
        rest = [name for name in self.copy_columns if name not in ("region_code", parent, own)]
        create = (
            f"CREATE TEMP TABLE IF NOT EXISTS {staging} "
            f"(LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        replace = (
            f"WITH staged AS (DELETE FROM {staging} RETURNING {columns}), "
            # One index probe per parent (the OFFSET keeps it so): a table just loaded has
            # no statistics, and the planner would otherwise read the region's children.
            f"gone AS (DELETE FROM {table} AS c USING (SELECT o.row_id "
            f"FROM unnest($2::bigint[]) AS p(id), LATERAL (SELECT t.ctid AS row_id, t.{own} "
            f"FROM {table} AS t WHERE t.region_code = $1 AND t.{parent} = p.id OFFSET 0) AS o "
            f"WHERE NOT EXISTS (SELECT FROM staged AS s WHERE s.{parent} = p.id "
            f"AND s.{own} = o.{own})) AS old WHERE c.ctid = old.row_id) "
            f"INSERT INTO {table} AS c ({columns}) SELECT {columns} FROM staged "
            f"ON CONFLICT (region_code, {parent}, {own}) DO UPDATE SET "
            + ", ".join(f"{name} = EXCLUDED.{name}" for name in rest)
            + ", written_at = now() WHERE ("
            + ", ".join(f"c.{name}" for name in rest)
            + ") IS DISTINCT FROM ("
            + ", ".join(f"EXCLUDED.{name}" for name in rest)
            + ")"
        )
        return create, replace


def _text(*names: str) -> tuple[Column, ...]:
    return tuple(Column(name, ColumnType.TEXT) for name in names)


def _strings(item: Mapping[str, Any], name: str) -> list[str] | None:
    value = item.get(name)
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    return [v if isinstance(v, str) else dumps(v).decode() for v in values]


def _count(item: Mapping[str, Any], name: str) -> int:
    value = item.get(name)
    return len(value) if isinstance(value, list) else 0


CHILDREN: tuple[ChildSpec, ...] = (
    ChildSpec(
        "property_photos", "properties", "property_id", "photos",
        columns=(*_text("url", "original_url", "caption"),
                 Column("is_default", ColumnType.BOOLEAN, ("default",))),
    ),
    ChildSpec(
        "reservation_guests", "reservations", "reservation_id", "guests", id_column=None,
        columns=_text("first_name", "last_name", "email", "phone"),
    ),
    ChildSpec(
        "task_assignments", "tasks", "task_id", "assignments",
        columns=(Column("assignee_id", ColumnType.BIGINT),
                 Column("assignee_name", ColumnType.TEXT, ("name",)),
                 Column("employee_code", ColumnType.TEXT),
                 Column("expires_at", ColumnType.TIMESTAMPTZ),
                 Column("status", ColumnType.TEXT, ("type_task_user_status",))),
    ),
    ChildSpec("task_photos", "tasks", "task_id", "photos", columns=_text("url", "caption")),
    ChildSpec("task_tags", "tasks", "task_id", "task_tags", "tag_id", columns=_text("name")),
    ChildSpec(
        "task_costs", "tasks", "task_id", "costs",
        columns=(Column("cost", ColumnType.NUMERIC), Column("description", ColumnType.TEXT),
                 Column("type_code", ColumnType.TEXT, ("type_cost", "code")),
                 Column("created_at", ColumnType.TIMESTAMPTZ)),
    ),
    ChildSpec(
        "task_supplies", "tasks", "task_id", "supplies",
        columns=(Column("supply_id", ColumnType.BIGINT), Column("name", ColumnType.TEXT),
                 Column("quantity", ColumnType.NUMERIC), Column("unit_cost", ColumnType.NUMERIC),
                 Column("total_price", ColumnType.NUMERIC)),
    ),
    # the task details (GET /task/{id}/comments, /requirements): fetched, not embedded
    ChildSpec(
        "task_comments", "tasks", "task_id", None,
        columns=(Column("comment", ColumnType.TEXT), Column("created_at", ColumnType.TIMESTAMPTZ),
                 Column("created_by_id", ColumnType.BIGINT, ("created_by", "id")),
                 Column("created_by_name", ColumnType.TEXT, ("created_by", "name"))),
    ),
    ChildSpec(
        "task_requirements", "tasks", "task_id", None, id_column=None,
        columns=(*_text("section_name", "response", "type_requirement"),
                 Column("photo_required", ColumnType.BOOLEAN),
                 *_text("note", "home_element_name")),
        derived=(("action", lambda item: _strings(item, "action")),
                 ("photo_count", lambda item: _count(item, "photos"))),
    ),
)  # fmt: skip
CHILD_TABLES = {spec.table: spec for spec in CHILDREN}
EMBEDDED: dict[str, tuple[ChildSpec, ...]] = {}
for _spec in CHILDREN:
    if _spec.source is not None:
        EMBEDDED[_spec.parent] = (*EMBEDDED.get(_spec.parent, ()), _spec)
DETAILS = ("task_comments", "task_requirements")


@dataclass
class ChildSets:
    """Rows of one child table for some parents, ready to COPY, and the items turned away."""

    spec: ChildSpec
    parents: list[int] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    received: int = 0

    def add(self, region: str, parent_id: int, items: Any, *, clean: bool = False) -> None:
        """Read one parent's items (``None``: no children). ``clean``: the items come from a
        record whose NUL characters are already removed (the loader's), so they are not
        looked for again."""
        self.parents.append(parent_id)
        if items is None:
            return
        if not isinstance(items, list):
            self.received += 1
            what = self.spec.source or self.spec.table.removeprefix("task_")
            reason = f"{what} is a {type(items).__name__}, not an array"
            self.rejections.append(Rejection(items, reason, str(parent_id)))
            return
        self.received += len(items)
        if clean and len(items) == 1 and self._one(region, parent_id, items[0]):
            return
        self._read(region, parent_id, items, clean)

    def _one(self, region: str, parent_id: int, item: Any) -> bool:
        """The common case, fast: a clean parent's only item, of the expected types.
        False leaves the item to ``_read``, which decides (and explains a rejection)."""
        spec = self.spec
        if type(item) is not dict or spec.derived:
            return False
        values = spec.reader.fast(item)
        if values is None:
            return False
        if spec.id_column is None:
            self.rows.append((region, parent_id, 0, *values, dumps(item)))
            return True
        item_id = item.get("id")
        if type(item_id) is not int or not BIGINT_MIN <= item_id <= BIGINT_MAX:
            return False
        self.rows.append((region, parent_id, item_id, 0, *values, dumps(item)))
        return True

    def _read(self, region: str, parent_id: int, items: list[Any], clean: bool) -> None:
        spec = self.spec
        values_of = spec.reader.values
        keyed = spec.id_column is not None
        derived = spec.derived
        append = self.rows.append
        seen: set[int] = set()
        for position, item in enumerate(items):
            try:
                if not isinstance(item, dict):
                    raise RecordRejected(
                        f"item {position} is a {type(item).__name__}, not an object"
                    )
                if keyed:
                    item_id = _item_id(item, position)
                    if item_id in seen:
                        raise RecordRejected(f"item {position} repeats id {item_id}")
                    seen.add(item_id)
                values = values_of(item, NO_DEFAULTS)
            except RecordRejected as err:
                self.rejections.append(Rejection(item, str(err), f"{parent_id}[{position}]"))
                continue
            if clean:
                data = dumps(item)
            else:
                cleaned, data = serialize(item)  # NUL characters removed, as in a parent
                if cleaned is not item:
                    item, values = cleaned, values_of(cleaned, NO_DEFAULTS)
            if derived:
                values += [compute(item) for _, compute in derived]
            if keyed:
                append((region, parent_id, item_id, position, *values, data))
            else:
                append((region, parent_id, position, *values, data))


def _item_id(item: dict[str, Any], position: int) -> int:
    """An item's own id, or ``RecordRejected``."""
    value = item.get("id")
    if type(value) is int and BIGINT_MIN <= value <= BIGINT_MAX:
        return value
    if value is None:
        raise RecordRejected(f"item {position} has no id")
    try:
        return to_bigint(value)
    except ValueError as err:
        raise RecordRejected(f"item {position}: id: {err}") from None


async def child_counts(pool: asyncpg.Pool) -> dict[str, int]:
    """Rows of each child table, all regions together (the demo shows them)."""
    counts = " UNION ALL ".join(
        f"SELECT '{spec.table}' AS child, count(*) AS n FROM {SCHEMA}.{spec.table}"
        for spec in CHILDREN
    )
    return {row["child"]: row["n"] for row in await pool.fetch(counts)}


async def write_embedded(
    conn: asyncpg.Connection,
    table: EntityTable,
    region: str,
    run_id: int | None,
    new_rows: list[Row],
    changed_rows: list[Row],
) -> int:
    """Replace the embedded children of the parents just written (the loader's new and
    changed rows), in the loader's transaction; returns the items rejected."""
    entity = table.spec.name
    if entity not in EMBEDDED:
        return 0
    id_at = table.key.index("id")
    writer = ChildWriter(region, run_id)
    rejected = 0
    for rows, fresh in ((new_rows, True), (changed_rows, False)):
        if rows:
            sets = await writer.embedded(
                entity, ((row[id_at], entry.record) for row, entry in rows)
            )
            rejected += await writer.replace(conn, sets, fresh=fresh)
    return rejected


class ChildWriter:
    """Replaces child sets of one region; statements built once per child table.

    ``ChildWriter.replace`` replaces the children of the given parents as sets, on the caller's
    connection and so inside the caller's transaction: a new parent's items are COPYed in; for a
    parent already stored, only the children that differ are written (deleted, inserted or updated
    through a staging table). The loader calls it for new and changed parents only (an unchanged
    parent costs nothing more). An item that cannot be stored does not fail anything: it goes to
    ``rejected_records`` (``entity_type`` = the child table) with the reason, and the rest of its
    set is stored. So for every set, items received = rows stored + items rejected (a value that is
    not an array counts as one rejected item and leaves an empty set).
    """

    def __init__(self, region: str, run_id: int | None = None) -> None:
        self.region = region
        self.run_id = run_id

    async def embedded(
        self, entity: str, parents: Iterable[tuple[int, Mapping[str, Any]]]
    ) -> list[ChildSets]:
        """The child sets of the embedded arrays of ``entity``'s records (id, record, with
        NUL characters already removed, as the loader's are). The event loop gets a turn
        every ``STEP`` parents, so that the batches being written meanwhile go on."""
        sets = [ChildSets(spec) for spec in EMBEDDED.get(entity, ())]
        if not sets:
            return sets
        for n, (parent_id, record) in enumerate(parents, 1):
            if not n % STEP:
                await asyncio.sleep(0)
            for child in sets:
                child.add(self.region, parent_id, record.get(child.spec.source), clean=True)
        return sets

    def fetched(self, table: str, parents: Mapping[int, Any]) -> ChildSets:
        """The child set of a fetched table (``task_comments``) from ``{parent id: answer}``."""
        child = ChildSets(CHILD_TABLES[table])
        for parent_id, items in parents.items():
            child.add(self.region, parent_id, items)
        return child

    async def replace(
        self, conn: asyncpg.Connection, sets: Iterable[ChildSets], *, fresh: bool = False
    ) -> int:
        """Replace each set's parents' children with its rows, in the caller's transaction.

        ``fresh``: the parents are new, so none has children yet: the rows are COPYed
        straight into the table. Otherwise through a staging table, writing only what
        differs (``ChildSpec.replace_statements``). Returns the number of items rejected."""
        rejected = 0
        for child in sets:
            spec = child.spec
            if fresh:
                if child.rows:
                    await conn.copy_records_to_table(
                        spec.table,
                        schema_name=SCHEMA,
                        records=child.rows,
                        columns=spec.copy_columns,
                    )
            elif child.parents:
                create, replace = spec.replace_statements
                await conn.execute(create)
                if child.rows:
                    await conn.copy_records_to_table(
                        f"staging_{spec.table}", records=child.rows, columns=spec.copy_columns
                    )
                await conn.execute(replace, self.region, child.parents)
            if child.rejections:
                await store_rejections(conn, self.region, spec.table, self.run_id, child.rejections)
                rejected += len(child.rejections)
        return rejected
