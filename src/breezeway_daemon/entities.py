"""The entity specs: one declarative table that drives the whole sync.

Each ``EntitySpec`` says where an entity's records come from (endpoints and how
they page), how they are keyed, which fields become typed columns, which
entities must be synced before it, and how it syncs (a full listing every time,
or incrementally by an update-time filter). The client pages from it, the
loader builds its SQL from it, and the region pipeline orders runs by it, so
adding an entity is one entry here plus a migration for its table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum


class ColumnType(StrEnum):
    """PostgreSQL types the loader knows how to convert API values into."""

    BIGINT = "bigint"
    TEXT = "text"
    FLOAT = "double precision"
    NUMERIC = "numeric"
    BOOLEAN = "boolean"
    DATE = "date"
    TIMESTAMPTZ = "timestamp with time zone"


class ListingMode(StrEnum):
    """How an entity is listed; each mode's listing is one strategy of ``sync.listings``."""

    FULL = "full"
    """Every run lists everything; records missing from a complete listing are deleted."""
    UPDATED_SINCE = "updated_since"
    """Incremental by a datetime filter (``updated_at_ge=<cursor>``)."""
    UPDATED_DATE_RANGE_PER_PARENT = "updated_date_range_per_parent"
    """Incremental by a ``YYYY-MM-DD,YYYY-MM-DD`` range, one listing per parent record."""
    DETAILS_PER_RECORD = "details_per_record"
    """One call per endpoint for each parent record its fetch policy picks, into child
    tables (task details: ``sync.details``)."""


@dataclass(frozen=True)
class Column:
    """A typed column: ``name`` in the table, read from ``source`` (a path into the record)."""

    name: str
    type: ColumnType
    source: tuple[str, ...] = ()
    required: bool = False

    @property
    def path(self) -> tuple[str, ...]:
        return self.source or (self.name,)


@dataclass(frozen=True)
class Endpoint:
    """One listing: ``path`` under the inventory base path.

    ``paged`` listings answer the paging envelope; the others a plain array.
    ``tag_type`` marks the rows of one of the three tag lists.
    """

    path: str
    paged: bool = True
    company_param: bool = True
    tag_type: str | None = None


@dataclass(frozen=True)
class ParentRef:
    """A column that must name an existing record of another entity in the same region."""

    column: str
    entity: str


@dataclass(frozen=True)
class Incremental:
    """How an incremental run filters, and how far back its window reaches.

    ``param`` is the API filter; ``overlap_days`` widens a day-granular window.
    """

    param: str
    overlap_days: int = 0


@dataclass(frozen=True)
class Backfill:
    """The filter a first (or full) run needs because the API hides old records by default."""

    param: str
    days: int
    column: str | None = None
    """The typed column ``param`` bounds: a complete backfill marks missing records deleted
    only inside its window (records older than the window are not listed, not gone)."""


@dataclass(frozen=True)
class Resync:
    """How ``resync --since/--until`` asks for a date window.

    With ``until_param`` the window is two filters (reservations: stays that overlap
    it); without, ``since_param`` takes it as one ``since,until`` range (tasks
    scheduled in it).
    """

    since_param: str
    until_param: str | None = None

    def params(self, since: date, until: date) -> dict[str, str]:
        if self.until_param is None:
            return {self.since_param: f"{since.isoformat()},{until.isoformat()}"}
        return {self.since_param: since.isoformat(), self.until_param: until.isoformat()}


class SpecError(ValueError):
    """An entity spec that contradicts itself or the others; raised when the specs are built."""


@dataclass(frozen=True)
class EntitySpec:
    name: str
    endpoints: tuple[Endpoint, ...]
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ("id",)
    parents: tuple[str, ...] = ()
    mode: ListingMode = ListingMode.FULL
    incremental: Incremental | None = None
    backfill: Backfill | None = None
    parent_ref: ParentRef | None = None
    per_parent_param: str | None = None
    """For per-parent listings (tasks): the query parameter naming the parent's id; the
    parent entity is ``parent_ref.entity``."""
    single_record_path: str | None = None
    """``GET`` one record by id (``{id}``); used to confirm a deletion before marking it."""
    resync: Resync | None = None
    """How a date window is re-fetched; None: the entity cannot be resynced."""
    noun: str = ""
    """One record, in messages ("property"); default: the name."""
    child_tables: tuple[str, ...] = ()
    """For details listings: the child table (``db.children``) each endpoint fills; such an
    entity has no table of its own."""

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise SpecError(f"entity spec {self.name!r}: {'; '.join(problems)}")

    def _problems(self) -> list[str]:
        """What contradicts itself in this spec (empty when it is consistent)."""
        if not isinstance(self.mode, ListingMode):
            return [f"mode {self.mode!r} is not a ListingMode"]
        problems = []
        full = self.mode is ListingMode.FULL
        per_parent = self.mode is ListingMode.UPDATED_DATE_RANGE_PER_PARENT
        details = self.mode is ListingMode.DETAILS_PER_RECORD
        # field: (needed by this mode, allowed in this mode)
        fields = {
            "incremental": (not full and not details,) * 2,
            "backfill": (self.mode is ListingMode.UPDATED_SINCE,) * 2,
            "per_parent_param": (per_parent, per_parent),
            "single_record_path": (per_parent, not details),
            "resync": (False, not full and not details),
        }
        for name, (needed, allowed) in fields.items():
            if needed and getattr(self, name) is None:
                problems.append(f"{self.mode} listings need {name}")
            elif not allowed and getattr(self, name) is not None:
                problems.append(f"{name} means nothing to {self.mode} listings")
        if details != bool(self.child_tables):
            problems.append(f"child_tables are for {ListingMode.DETAILS_PER_RECORD} listings")
        if details and (
            len(self.child_tables) != len(self.endpoints)
            or any("{id}" not in e.path for e in self.endpoints)
            or len(self.parents) != 1
        ):
            problems.append("a details listing needs one parent, and per endpoint a child table "
                            "and an {id} in its path")  # fmt: skip
        if per_parent and self.parent_ref is None:
            problems.append("a per-parent listing needs parent_ref (the parent entity)")
        if self.parent_ref is not None:
            if self.parent_ref.entity not in self.parents:
                problems.append(f"parent_ref names {self.parent_ref.entity}, not in parents")
            if self.parent_ref.column not in self.typed_column_names:
                problems.append(f"parent_ref column {self.parent_ref.column} is not a column")
        if self.backfill is not None and self.backfill.column not in (
            None,
            *self.typed_column_names,
        ):
            problems.append(f"backfill column {self.backfill.column} is not a column")
        if self.single_record_path is not None and "{id}" not in self.single_record_path:
            problems.append("single_record_path must contain {id}")
        return problems

    @property
    def table(self) -> str:
        return self.name

    @property
    def record_noun(self) -> str:
        return self.noun or self.name

    @property
    def typed_column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)


def _text(*names: str) -> tuple[Column, ...]:
    return tuple(Column(name, ColumnType.TEXT) for name in names)


PROPERTIES = EntitySpec(
    name="properties",
    noun="property",
    endpoints=(Endpoint("/property"),),
    columns=(
        Column("company_id", ColumnType.BIGINT),
        *_text("name", "status", "address1", "address2", "building", "city", "state"),
        *_text("zipcode", "country", "display"),
        Column("latitude", ColumnType.FLOAT),
        Column("longitude", ColumnType.FLOAT),
        Column("bedrooms", ColumnType.NUMERIC),
        Column("bathrooms", ColumnType.NUMERIC),
        Column("living_area", ColumnType.NUMERIC),
        Column("year_built", ColumnType.BIGINT),
        *_text("reference_company_id", "reference_external_property_id", "reference_property_id"),
    ),
)

RESERVATIONS = EntitySpec(
    name="reservations",
    endpoints=(Endpoint("/reservation"),),
    columns=(
        Column("property_id", ColumnType.BIGINT, required=True),
        Column("status", ColumnType.TEXT),
        Column("checkin_date", ColumnType.DATE),
        Column("checkin_time", ColumnType.TEXT),
        Column("checkout_date", ColumnType.DATE),
        Column("checkout_time", ColumnType.TEXT),
        Column("adults", ColumnType.BIGINT),
        Column("children", ColumnType.BIGINT),
        Column("pets", ColumnType.BIGINT),
        Column("source", ColumnType.TEXT),
        Column("type_stay", ColumnType.TEXT, ("type_stay", "code")),
        Column("reference_reservation_id", ColumnType.TEXT),
        Column("reference_property_id", ColumnType.TEXT),
        Column("created_at", ColumnType.TIMESTAMPTZ),
        Column("updated_at", ColumnType.TIMESTAMPTZ),
    ),
    parents=("properties",),
    mode=ListingMode.UPDATED_SINCE,
    incremental=Incremental("updated_at_ge"),
    backfill=Backfill("checkout_date_ge", days=365, column="checkout_date"),
    parent_ref=ParentRef("property_id", "properties"),
    resync=Resync("checkout_date_ge", "checkin_date_le"),
)

TASKS = EntitySpec(
    name="tasks",
    endpoints=(Endpoint("/task/", company_param=False),),
    columns=(
        Column("property_id", ColumnType.BIGINT, ("home_id",), required=True),
        Column("reference_property_id", ColumnType.TEXT),
        Column("name", ColumnType.TEXT),
        Column("type_department", ColumnType.TEXT),
        Column("type_priority", ColumnType.TEXT),
        Column("status_code", ColumnType.TEXT, ("type_task_status", "code")),
        Column("status_stage", ColumnType.TEXT, ("type_task_status", "stage")),
        Column("scheduled_date", ColumnType.DATE),
        Column("scheduled_time", ColumnType.TEXT),
        Column("paused", ColumnType.BOOLEAN),
        Column("created_at", ColumnType.TIMESTAMPTZ),
        Column("updated_at", ColumnType.TIMESTAMPTZ),
        Column("started_at", ColumnType.TIMESTAMPTZ),
        Column("finished_at", ColumnType.TIMESTAMPTZ),
        Column("linked_reservation_id", ColumnType.BIGINT, ("linked_reservation", "id")),
        Column("template_id", ColumnType.BIGINT),
        Column("parent_task_id", ColumnType.BIGINT),
        Column("total_cost", ColumnType.NUMERIC),
        Column("total_time", ColumnType.TEXT),
        Column("rate_paid", ColumnType.TEXT),
        Column("billable", ColumnType.BOOLEAN),
    ),
    parents=("properties",),
    mode=ListingMode.UPDATED_DATE_RANGE_PER_PARENT,
    incremental=Incremental("updated_at", overlap_days=1),
    parent_ref=ParentRef("property_id", "properties"),
    per_parent_param="home_id",
    single_record_path="/task/{id}",
    resync=Resync("scheduled_date"),
)

# Comments and requirements of tasks, into task_comments and task_requirements: no table of
# its own (task_details_fetches records what was fetched, for the fetch policy).
TASK_DETAILS = EntitySpec(
    name="task_details",
    endpoints=(
        Endpoint("/task/{id}/comments", paged=False, company_param=False),
        Endpoint("/task/{id}/requirements", paged=False, company_param=False),
    ),
    columns=(),
    parents=("tasks",),
    mode=ListingMode.DETAILS_PER_RECORD,
    child_tables=("task_comments", "task_requirements"),
    noun="task's details",
)

PEOPLE = EntitySpec(
    name="people",
    endpoints=(Endpoint("/people", paged=False),),
    columns=(
        *_text("first_name", "last_name"),
        Column("active", ColumnType.BOOLEAN),
        Column("employee_code", ColumnType.TEXT),
    ),
)

SUPPLIES = EntitySpec(
    name="supplies",
    endpoints=(Endpoint("/supplies"),),
    columns=(
        Column("company_id", ColumnType.BIGINT),
        *_text("name", "description", "size", "internal_id"),
        Column("unit_cost", ColumnType.NUMERIC),
        Column("stock_count", ColumnType.NUMERIC),
        Column("low_stock_alert", ColumnType.BOOLEAN),
        Column("low_stock_count", ColumnType.NUMERIC),
        Column("supply_category_id", ColumnType.BIGINT),
        Column("stock_status", ColumnType.TEXT, ("type_stock_status", "code")),
        Column("created_at", ColumnType.TIMESTAMPTZ),
        Column("updated_at", ColumnType.TIMESTAMPTZ),
    ),
)

TAGS = EntitySpec(
    name="tags",
    endpoints=(
        Endpoint("/task/tags", paged=False, tag_type="task"),
        Endpoint("/property/tags", paged=False, tag_type="property"),
        Endpoint("/reservation/tags", paged=False, tag_type="reservation"),
    ),
    columns=(
        Column("name", ColumnType.TEXT),
        Column("company_id", ColumnType.BIGINT),
        Column("description", ColumnType.TEXT),
    ),
    key=("tag_type", "id"),
)


def build_entities(*specs: EntitySpec) -> dict[str, EntitySpec]:
    """The specs by name, in order; ``SpecError`` when a name repeats, or a spec names a
    parent that is unknown or comes after it."""
    built: dict[str, EntitySpec] = {}
    for spec in specs:
        if spec.name in built:
            raise SpecError(f"entity spec {spec.name!r} is declared twice")
        missing = [parent for parent in spec.parents if parent not in built]
        if missing:
            raise SpecError(
                f"entity spec {spec.name!r}: parents {', '.join(missing)} must be declared before it"
            )
        built[spec.name] = spec
    return built


ENTITIES: dict[str, EntitySpec] = build_entities(
    PROPERTIES, RESERVATIONS, TASKS, TASK_DETAILS, PEOPLE, SUPPLIES, TAGS
)
ENTITY_NAMES: tuple[str, ...] = tuple(ENTITIES)
RESYNC_ENTITIES: tuple[str, ...] = tuple(name for name, s in ENTITIES.items() if s.resync)
"""The entities ``resync`` re-fetches a date window of."""
PARENT_ENTITIES: frozenset[str] = frozenset(p for s in ENTITIES.values() for p in s.parents)
"""The entities others depend on (properties)."""


def entity(name: str) -> EntitySpec:
    """The spec named ``name``; ``KeyError`` naming the known ones otherwise."""
    try:
        return ENTITIES[name]
    except KeyError:
        raise KeyError(f"unknown entity {name!r} (known: {', '.join(ENTITY_NAMES)})") from None


def in_a_chain(name: str) -> bool:
    """Whether ``name`` runs in its region's chain of dependants (a parent, or a child),
    rather than beside it."""
    return bool(ENTITIES[name].parents) or name in PARENT_ENTITIES


def in_dependency_order(names: tuple[str, ...] | list[str]) -> list[str]:
    """``names`` ordered so that every entity comes after the parents it depends on."""
    ordered: list[str] = []

    def visit(name: str) -> None:
        if name in ordered:
            return
        for parent in ENTITIES[name].parents:
            if parent in names:
                visit(parent)
        ordered.append(name)

    for name in sorted(names, key=ENTITY_NAMES.index):
        visit(name)
    return ordered
