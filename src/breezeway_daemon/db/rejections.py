"""Records that cannot be stored: why, and their copy in ``rejected_records``.

A rejected record is kept whole (its JSON, when it has any) with the reason, the
region, entity and run, so that nothing received is lost without a trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from breezeway_daemon.db.entity_table import SCHEMA
from breezeway_daemon.entities import EntitySpec
from breezeway_daemon.records import column_values, display_id, serialize

COLUMNS = ("region_code", "entity_type", "record_id", "reason", "raw", "run_id")


@dataclass
class Rejection:
    record: Any
    reason: str
    record_id: str | None = None
    """What ``rejected_records.record_id`` shows instead of the record's id (a child item:
    ``<parent id>[<position>]``, or its parent's id for a whole value)."""


def orphan_reason(spec: EntitySpec, record: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    """Why ``record`` is rejected when its parent (``spec.parent_ref``) is not stored."""
    ref = spec.parent_ref
    assert ref is not None
    column = next(c for c in spec.columns if c.name == ref.column)
    value = column_values(record, (column,), defaults)[0]
    return f"{'.'.join(column.path)} {value} is not a known {ref.entity} record of this region"


async def store_rejections(
    conn: asyncpg.Connection,
    region: str,
    entity: str,
    run_id: int | None,
    rejections: list[Rejection],
) -> None:
    """COPY ``rejections`` into ``rejected_records``."""
    rows = []
    for rejection in rejections:
        record = rejection.record
        raw = serialize(record)[1] if record is not None else None
        shown = rejection.record_id or display_id(record)
        rows.append((region, entity, shown, rejection.reason, raw, run_id))
    await conn.copy_records_to_table(
        "rejected_records", schema_name=SCHEMA, records=rows, columns=COLUMNS
    )
