"""Fields dropped before storage: the ``BREEZEWAY_DROP_FIELDS`` policy.

A field is named ``entity.path``, where ``path`` is dotted keys and ``[]`` walks
every item of an array: ``reservations.access_code``,
``properties.wifi_password``, ``reservations.guests[].email``. The loader applies
the policy to each record before anything else reads it, so the field is in
neither ``raw``, a typed column, a child table, ``rejected_records`` nor the
content hash (a new policy therefore rewrites each record at its next sync).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

EACH = "[]"
_STEP = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\[\])?")


@dataclass(frozen=True)
class FieldPath:
    """One dropped field of one entity."""

    entity: str
    steps: tuple[str, ...]  # keys, with EACH for "every item of this array"

    def __str__(self) -> str:
        return self.entity + "." + ".".join(self.steps).replace("." + EACH, EACH)


def parse_field(text: str, entities: Iterable[str], keys: Mapping[str, Iterable[str]]) -> FieldPath:
    """``entity.path`` as a FieldPath; ValueError naming what is wrong.

    ``keys`` gives each entity's key fields, which can never be dropped.
    """
    entity, _, path = text.strip().partition(".")
    known = sorted(entities)
    if entity not in known:
        raise ValueError(f"{text!r}: unknown entity {entity!r} (known: {', '.join(known)})")
    steps: list[str] = []
    for part in path.split("."):
        if not _STEP.fullmatch(part):
            raise ValueError(f"{text!r}: expected entity.field[.field...] with [] after an array")
        if part.endswith(EACH):
            steps += [part[: -len(EACH)], EACH]
        else:
            steps.append(part)
    if steps[-1] == EACH:
        raise ValueError(f"{text!r}: name a field inside the array's items, not the items")
    if len(steps) == 1 and steps[0] in set(keys.get(entity, ())):
        raise ValueError(
            f"{text!r}: {steps[0]} is part of the key of {entity} and cannot be dropped"
        )
    return FieldPath(entity, tuple(steps))


class FieldDrop:
    """The fields to drop from one entity's records."""

    def __init__(self, paths: Iterable[FieldPath]) -> None:
        self.paths = tuple(paths)

    def __bool__(self) -> bool:
        return bool(self.paths)

    def apply(self, record: Any) -> Any:
        """``record`` without the dropped fields; the same object when none was there.

        A record that is not an object (a bad record) is returned unchanged.
        """
        for path in self.paths:
            record = _without(record, path.steps)
        return record


def _without(value: Any, steps: tuple[str, ...]) -> Any:
    """``value`` with the field at ``steps`` removed, copying only along the path."""
    step, rest = steps[0], steps[1:]
    if step == EACH:
        if not isinstance(value, list):
            return value
        items = [_without(item, rest) for item in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    if not isinstance(value, Mapping) or step not in value:
        return value
    if not rest:
        return {k: v for k, v in value.items() if k != step}
    inner = _without(value[step], rest)
    return value if inner is value[step] else {**value, step: inner}


def drops_by_entity(paths: Iterable[FieldPath]) -> dict[str, FieldDrop]:
    """The policy per entity; an entity with nothing to drop is absent."""
    grouped: dict[str, list[FieldPath]] = {}
    for path in paths:
        grouped.setdefault(path.entity, []).append(path)
    return {entity: FieldDrop(group) for entity, group in grouped.items()}
