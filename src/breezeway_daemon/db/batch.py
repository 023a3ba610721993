"""A batch's Python work, which needs no database.

(``prepare_batch``: keys, JSON and hashes; ``typed_rows``: the table's rows.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from breezeway_daemon.db.entity_table import EntityTable
from breezeway_daemon.db.rejections import Rejection
from breezeway_daemon.privacy import FieldDrop
from breezeway_daemon.records import RecordRejected, content_hash, record_id, serialize

# ``prepare_batch`` drops the fields the policy names (``privacy.FieldDrop``) from each record
# before anything else reads it, reads its key, serializes and hashes it, and keeps one record per
# key (the last wins): all an unchanged record costs on this side. ``typed_rows`` converts the new
# and changed records into their table's rows. Both let the event loop run every ``STEP`` records,
# so that the batches being written meanwhile are not kept waiting.
STEP = 25  # records of Python work (about 0.2 ms) between two turns of the event loop


@dataclass
class Entry:
    record: Mapping[str, Any]
    data: bytes
    digest: bytes


@dataclass
class PreparedBatch:
    """A batch after its Python work: keys, JSON, hashes."""

    received: int
    duplicates: int
    entries: dict[int, Entry]  # by id, in arrival order (other key columns are constant)
    rejections: list[Rejection]


Row = tuple[tuple[Any, ...], Entry]  # a row to write, and the entry it came from


async def prepare_batch(
    table: EntityTable,
    records: Iterable[Any],
    key_values: Mapping[str, Any],
    drop: FieldDrop | None = None,
) -> PreparedBatch:
    """The batch's keys, JSON and hashes, without the fields ``drop`` names (in no
    row, hash or rejection). The last record of a key wins."""
    for name in table.fixed_key:
        if key_values.get(name) is None:
            raise ValueError(f"{table.spec.name} needs key_values[{name!r}]")
    received = duplicates = 0
    entries: dict[int, Entry] = {}
    rejections: list[Rejection] = []
    for record in records:
        received += 1
        if not received % STEP:
            await asyncio.sleep(0)
        if drop:
            record = drop.apply(record)
        try:
            identifier = record_id(record)
        except RecordRejected as err:
            rejections.append(Rejection(record, str(err)))
            continue
        clean, data = serialize(record)
        if identifier in entries:
            duplicates += 1
            del entries[identifier]  # keep the last one, in arrival order
        entries[identifier] = Entry(clean, data, content_hash(data))
    return PreparedBatch(received, duplicates, entries, rejections)


async def typed_rows(
    table: EntityTable,
    region: str,
    run_id: int | None,
    ids: list[int],
    entries: dict[int, Entry],
    fixed: list[Any],
    defaults: Mapping[str, Any],
    rejections: list[Rejection],
) -> tuple[list[Row], set[int]]:
    """The rows of ``ids`` and the parent ids they name; a record that cannot be
    converted goes to ``rejections``."""
    rows = []
    parent_ids: set[int] = set()
    parent_ref = table.spec.parent_ref
    parent_index = table.spec.typed_column_names.index(parent_ref.column) if parent_ref else None
    values_of = table.reader.values
    for n, identifier in enumerate(ids, 1):
        if not n % STEP:
            await asyncio.sleep(0)
        entry = entries[identifier]
        try:
            values = values_of(entry.record, defaults)
        except RecordRejected as err:
            rejections.append(Rejection(entry.record, str(err)))
            continue
        if parent_index is not None:
            parent_ids.add(values[parent_index])
        key = (region, *fixed, identifier) if fixed else (region, identifier)
        rows.append(((*key, *values, entry.data, entry.digest, run_id), entry))
    return rows, parent_ids


def without_orphans(
    table: EntityTable, rows: list[Row], missing: set[int]
) -> tuple[list[Row], list[Mapping[str, Any]]]:
    """``rows`` whose parent is stored, and the records of the others."""
    assert table.spec.parent_ref is not None
    position = len(table.key) + table.spec.typed_column_names.index(table.spec.parent_ref.column)
    kept, orphaned = [], []
    for row, entry in rows:
        if row[position] in missing:
            orphaned.append(entry.record)
        else:
            kept.append((row, entry))
    return kept, orphaned
