"""BREEZEWAY_DROP_FIELDS: which fields are never stored, and the errors of a bad list."""

from __future__ import annotations

import pytest

from breezeway_daemon.config import ConfigError, load_settings


def drops(text: str):  # noqa: ANN201 - test shorthand
    return load_settings(drop_fields=text, database_url="postgresql://fake@127.0.0.1/x").field_drops


def test_fields_leave_the_record_at_any_depth_and_the_original_is_untouched() -> None:
    policy = drops(
        "reservations.access_code, reservations.guests[].email, reservations.stay.door.code"
    )
    record = {
        "id": 7,
        "access_code": "1234",
        "guests": [{"first_name": "Ann", "email": "ann@example.com"}, {"first_name": "Bo"}],
        "stay": {"door": {"code": "9", "side": "left"}},
    }
    stored = policy["reservations"].apply(record)
    assert stored == {
        "id": 7,
        "guests": [{"first_name": "Ann"}, {"first_name": "Bo"}],
        "stay": {"door": {"side": "left"}},
    }
    assert record["access_code"] == "1234" and "email" in record["guests"][0]


def test_a_record_without_the_field_is_returned_as_it_is() -> None:
    policy = drops("properties.wifi_password,properties.rooms[].lock")["properties"]
    record = {"id": 1, "rooms": [{"name": "a"}], "wifi_name": "x"}
    assert policy.apply(record) is record
    assert policy.apply("not an object") == "not an object"
    assert policy.apply({"id": 2, "rooms": "not a list"}) == {"id": 2, "rooms": "not a list"}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("tasks.id", "part of the key"),
        ("nope.x", "unknown entity"),
        ("tasks.a..b", "expected entity.field"),
        ("tasks.guests[]", "inside the array"),
    ],
)
def test_a_bad_field_list_names_the_setting_and_the_reason(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        drops(text)
    assert str(caught.value).startswith("BREEZEWAY_DROP_FIELDS:")
    assert says in str(caught.value)
    assert "\n" not in str(caught.value)
