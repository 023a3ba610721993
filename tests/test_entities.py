"""The entity specs: inconsistent ones are refused when built; what the sync derives from them."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from breezeway_daemon.entities import (
    ENTITIES,
    PROPERTIES,
    TASK_DETAILS,
    TASKS,
    ListingMode,
    SpecError,
    build_entities,
    in_a_chain,
)
from breezeway_daemon.sync.run import LISTINGS


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"parent_ref": None}, "per-parent listing needs parent_ref"),
        ({"per_parent_param": None}, "per_parent listings need per_parent_param"),
        ({"single_record_path": "/task/"}, "single_record_path must contain {id}"),
        ({"mode": ListingMode.FULL}, "incremental means nothing to full listings"),
        ({"mode": ListingMode.UPDATED_SINCE}, "updated_since listings need backfill"),
        ({"mode": "updated_since"}, "is not a ListingMode"),
        ({"parents": ()}, "parent_ref names properties, not in parents"),
    ],
)
def test_an_inconsistent_spec_is_refused_when_built(changes: dict, problem: str) -> None:
    with pytest.raises(SpecError, match="entity spec 'tasks'") as raised:
        dataclasses.replace(TASKS, **changes)
    assert problem in str(raised.value)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"child_tables": ("task_comments",)}, "per endpoint a child table"),
        ({"child_tables": ()}, "child_tables are for details_per_record listings"),
        ({"parents": ()}, "a details listing needs one parent"),
        ({"single_record_path": "/task/{id}"}, "single_record_path means nothing to details"),
    ],
)
def test_an_inconsistent_details_spec_is_refused(changes: dict, problem: str) -> None:
    with pytest.raises(SpecError, match="entity spec 'task_details'") as raised:
        dataclasses.replace(TASK_DETAILS, **changes)
    assert problem in str(raised.value)


def test_specs_are_refused_when_a_parent_is_unknown_or_declared_after() -> None:
    with pytest.raises(SpecError, match="parents properties must be declared before it"):
        build_entities(TASKS, PROPERTIES)
    with pytest.raises(SpecError, match="declared twice"):
        build_entities(PROPERTIES, PROPERTIES)


def test_the_chain_of_dependants_comes_from_the_parents() -> None:
    chained = {name for name in ENTITIES if in_a_chain(name)}
    assert chained == {"properties", "reservations", "tasks", "task_details"}


def test_resync_windows_come_from_the_specs() -> None:
    since, until = date(2024, 3, 1), date(2024, 3, 9)
    assert ENTITIES["reservations"].resync.params(since, until) == {  # type: ignore[union-attr]
        "checkout_date_ge": "2024-03-01",
        "checkin_date_le": "2024-03-09",
    }
    assert TASKS.resync.params(since, until) == {"scheduled_date": "2024-03-01,2024-03-09"}  # type: ignore[union-attr]


def test_every_listing_mode_has_its_listing() -> None:
    assert set(LISTINGS) == set(ListingMode)
