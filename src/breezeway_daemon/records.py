"""Turning API records into storable rows: NUL removal, keys, typed column values.

Every function here is pure. A value that cannot become its column's type raises
``RecordRejected`` with a reason naming the field; the loader sends that record
to ``rejected_records`` and stores the rest of its batch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from breezeway_daemon.entities import Column, ColumnType

BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
ESCAPED_NUL = b"\\u0000"


class RecordRejected(ValueError):
    """This record cannot be stored; ``str(err)`` is the reason."""


def dumps(value: Any) -> bytes:
    """JSON bytes; falls back to the stdlib for what orjson refuses (integers over 64 bits).

    The result is a copy of its own size: orjson (3.13) leaves its output in a block
    of about 16 KiB whatever its length, so that each record a batch holds would cost
    ten times its JSON (a sync of eight regions peaked near 300 MB of such blocks).
    """
    try:
        return memoryview(orjson.dumps(value)).tobytes()
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def loads(data: bytes | str) -> Any:
    """Parse JSON; falls back to the stdlib for integers over 64 bits."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def without_nul(value: Any) -> Any:
    """``value`` with every NUL character removed from every string, keys included."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    return value


def serialize(record: Mapping[str, Any]) -> tuple[Mapping[str, Any], bytes]:
    """The record without NULs, and its JSON. Serializes once in the common case."""
    data = dumps(record)
    # A NUL is always escaped, so its escape has a backslash: looking for one byte
    # (memchr) first saves most records the slower search for six.
    if b"\\" in data and ESCAPED_NUL in data:
        record = without_nul(record)
        data = dumps(record)
    return record, data


def content_hash(data: bytes) -> bytes:
    # SHA-256 runs in hardware on current x86 and ARM CPUs: twice as fast as blake2b here.
    return hashlib.sha256(data).digest()


def pick(record: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = record
    for part in path:
        if type(value) is not dict:
            return None
        value = value.get(part)
    return value


def to_bigint(value: Any) -> int:
    if type(value) is int and BIGINT_MIN <= value <= BIGINT_MAX:
        return value
    if isinstance(value, bool):
        raise ValueError("a boolean is not an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{value!r} is not a whole number")
        value = int(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{_show(value)} is not an integer") from None
    elif not isinstance(value, int):
        raise ValueError(f"{type(value).__name__} is not an integer")
    if not BIGINT_MIN <= value <= BIGINT_MAX:
        raise ValueError(f"{value} is out of the bigint range")
    return value


def to_text(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    # An object where text was expected: keep it readable rather than lose the record.
    return dumps(value).decode()


def to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise ValueError(f"{_show(value)} is not a number") from None
    raise ValueError(f"{type(value).__name__} is not a number")


def to_numeric(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    if isinstance(value, int | float | str):
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"{_show(value)} is not a number") from None
        if not number.is_finite():
            raise ValueError(f"{_show(value)} is not a finite number")
        return number
    raise ValueError(f"{type(value).__name__} is not a number")


def to_boolean(value: Any) -> bool:
    if type(value) is bool:
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise ValueError(f"{_show(value)} is not a boolean")


def to_date(value: Any) -> date:
    if not isinstance(value, str):
        raise ValueError(f"{type(value).__name__} is not a date")
    text = value.strip()
    try:
        if len(text) > 10 and text[10] in "T ":
            return to_timestamptz(text).date()
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{_show(value)} is not a date") from None


def to_timestamptz(value: Any) -> datetime:
    """An aware UTC datetime; a value without a zone is UTC (the API's rule)."""
    if type(value) is str:
        # The common shapes, without ``replace(tzinfo=...)``, which costs more than a parse.
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if moment.tzinfo is UTC:
                return moment
            if moment.tzinfo is None:
                return datetime.fromisoformat(value + "+00:00")
            return moment.astimezone(UTC)
    if not isinstance(value, str):
        raise ValueError(f"{type(value).__name__} is not a date-time")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{_show(value)} is not a date-time") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


CONVERTERS: dict[ColumnType, Callable[[Any], Any]] = {
    ColumnType.BIGINT: to_bigint,
    ColumnType.TEXT: to_text,
    ColumnType.FLOAT: to_float,
    ColumnType.NUMERIC: to_numeric,
    ColumnType.BOOLEAN: to_boolean,
    ColumnType.DATE: to_date,
    ColumnType.TIMESTAMPTZ: to_timestamptz,
}


# The exact Python type a column takes as it is, when the API's value already has it.
AS_IS: dict[ColumnType, str] = {
    ColumnType.TEXT: "type(raw) is str",
    ColumnType.BOOLEAN: "type(raw) is bool",
    ColumnType.FLOAT: "type(raw) is float",
    ColumnType.BIGINT: f"type(raw) is int and {BIGINT_MIN} <= raw <= {BIGINT_MAX}",
    # an int is exact as it is (the driver makes it a numeric without going through a string)
    ColumnType.NUMERIC: "type(raw) is int",
}


class ColumnReader:
    """Reads and converts the typed columns of one entity; built once per spec.

    ``values`` runs for every new or changed record, so it is compiled for its
    columns: straight-line code, values of the right type taken as they are,
    converters called only for the rest. ``_read`` is the same rule, column by
    column, for the records the fast path turns away (missing values, defaults,
    values to convert or to reject).
    """

    def __init__(self, columns: tuple[Column, ...]) -> None:
        self.columns = columns
        self._steps = [
            (column.name, column.path, CONVERTERS[column.type], column.required,
             column.type is not ColumnType.TEXT)
            for column in columns
        ]  # fmt: skip
        self.fast = self._compile()

    def values(self, record: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[Any]:
        """The typed values, or ``RecordRejected`` naming the field at fault."""
        if type(record) is dict:
            values = self.fast(record)
            if values is not None:
                return values
        return self._read(record, defaults)

    def _read(self, record: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[Any]:
        values = []
        for name, path, convert, required, empty_is_null in self._steps:
            raw = record.get(path[0]) if len(path) == 1 else pick(record, path)
            if raw is None or (empty_is_null and raw == ""):
                raw = defaults.get(name)
                if raw is None:
                    if required:
                        raise RecordRejected(f"{'.'.join(path)} is missing")
                    values.append(None)
                    continue
            try:
                values.append(convert(raw))
            except ValueError:
                values.append(_FAILED)
                break
        if values and values[-1] is _FAILED:
            name, path, convert, _, _ = self._steps[len(values) - 1]
            try:
                convert(raw)
            except ValueError as err:
                raise RecordRejected(f"{'.'.join(path)}: {err}") from None
        return values

    def _compile(self) -> Callable[[dict[str, Any]], list[Any] | None]:
        """A function giving the values of a record, or None where ``_read`` must decide.

        It decides alone when every column is present and either of its type or
        converted without error; a missing value (which a default may fill) or a
        value that does not convert goes to ``_read``, which names the fault.
        """
        lines = ["def fast(record):", "    get = record.get"]
        scope: dict[str, Any] = {"pick": pick}
        for i, column in enumerate(self.columns):
            path = column.path
            if len(path) == 1:
                lines.append(f"    raw = get({path[0]!r})")
            else:
                lines.append(f"    raw = pick(record, {path!r})")
            check = AS_IS.get(column.type)
            empty = " or raw == ''" if column.type is not ColumnType.TEXT else ""
            lines.append(f"    if raw is None{empty}:")
            lines.append("        return None" if column.required else f"        v{i} = None")
            if check:
                lines.append(f"    elif {check}:")
                lines.append(f"        v{i} = raw")
            scope[f"convert{i}"] = CONVERTERS[column.type]
            lines += [
                "    else:",
                "        try:",
                f"            v{i} = convert{i}(raw)",
                "        except ValueError:",
                "            return None",
            ]
        lines.append(f"    return [{', '.join(f'v{i}' for i in range(len(self.columns)))}]")
        exec("\n".join(lines), scope)  # noqa: S102 - source built above from the spec only
        return scope["fast"]


_FAILED = object()


@functools.lru_cache(maxsize=64)
def column_reader(columns: tuple[Column, ...]) -> ColumnReader:
    """The reader of ``columns``, compiled once."""
    return ColumnReader(columns)


def column_values(
    record: Mapping[str, Any], columns: tuple[Column, ...], defaults: Mapping[str, Any]
) -> list[Any]:
    """The typed values of ``columns``, or ``RecordRejected`` naming the field at fault."""
    return column_reader(columns).values(record, defaults)


def record_id(record: Any) -> int:
    """The record's Breezeway id, or ``RecordRejected``."""
    if type(record) is dict:
        value = record.get("id")
        if type(value) is int and BIGINT_MIN <= value <= BIGINT_MAX:
            return value
    if not isinstance(record, Mapping):
        raise RecordRejected(f"a {type(record).__name__} is not a record")
    value = record.get("id")
    if value is None:
        raise RecordRejected("id is missing")
    try:
        return to_bigint(value)
    except ValueError as err:
        raise RecordRejected(f"id: {err}") from None


def display_id(record: Any) -> str | None:
    """The id as text for ``rejected_records.record_id`` (whatever its type), or None."""
    if isinstance(record, Mapping) and record.get("id") is not None:
        return _show(record["id"], limit=100).strip("'")
    return None


def _show(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
