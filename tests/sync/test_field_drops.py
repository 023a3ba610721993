"""The sensitive-fields policy (``BREEZEWAY_DROP_FIELDS``): a dropped field is nowhere in
the database after a sync: not in ``raw``, a typed column, a child table, a rejected record
nor any other table."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import asyncpg

from breezeway_daemon.sync import EntitySync, SyncRequest

from support.syncenv import SyncEnv as Env

REGION = "region_1"
ANALYSTS_DEFAULT = (
    "reservations.access_code,properties.wifi_password,"
    "reservations.guests[].email,reservations.guests[].phone"
)


async def where_found(pool: asyncpg.Pool, needles: Iterable[str]) -> dict[str, list[str]]:
    """For each of ``needles``, ``table.column`` of every column of every table that holds
    it (text as text, bytea as UTF-8 bytes); needles found nowhere are left out."""
    columns = await pool.fetch(
        """
        SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) AS ref,
               table_name, column_name, quote_ident(column_name) AS col, data_type
        FROM information_schema.columns
        JOIN information_schema.tables USING (table_schema, table_name)
        WHERE table_type = 'BASE TABLE'
          AND table_schema NOT IN ('pg_catalog', 'information_schema')
        """
    )
    found: dict[str, list[str]] = {}
    for column in columns:
        col = column["col"]
        if column["data_type"] == "bytea":
            match = f"position(convert_to(n, 'UTF8') in {col}) > 0"
        else:
            match = f"strpos({col}::text, n) > 0"
        rows = await pool.fetch(
            f"SELECT n FROM unnest($1::text[]) n "
            f"WHERE EXISTS (SELECT 1 FROM {column['ref']} WHERE {match})",
            list(needles),
        )
        for row in rows:
            found.setdefault(row["n"], []).append(f"{column['table_name']}.{column['column_name']}")
    return found


async def test_a_dropped_field_is_nowhere_in_the_database(env: Env) -> None:
    company = env.company(REGION)
    env.sim.faults.bad_records = {"unknown_property"}  # a reservation goes to rejected_records
    settings = env.settings.model_copy(update={"drop_fields": tuple(ANALYSTS_DEFAULT.split(","))})
    ctx = dataclasses.replace(env.ctx, settings=settings)
    for entity in ("properties", "reservations"):
        result = await EntitySync(ctx, SyncRequest(REGION, entity, "full")).run()
        assert result.status == "success", result.error

    reservations = env.sim.truth(company, "reservations")
    properties = env.sim.truth(company, "properties")
    guests = [guest for r in reservations.values() for guest in r["guests"]]
    assert guests and all(guest["email"] and guest["phone"] for guest in guests)
    assert await env.pool.fetchval(
        "SELECT count(*) FROM breezeway.rejected_records WHERE entity_type = 'reservations'"
    )
    # The search finds what is stored: fields next to the dropped ones are there.
    last_name, wifi_name = guests[0]["last_name"], next(iter(properties.values()))["wifi_name"]
    kept = await where_found(env.pool, [last_name, wifi_name])
    assert "reservations.raw" in kept[last_name] and "properties.raw" in kept[wifi_name]
    # ... the child table too, whose email and phone columns stay empty.
    assert "reservation_guests.last_name" in kept[last_name]

    needles = {"access_code", "wifi_password", "@guest.example.com"}
    needles |= {guest["phone"] for guest in guests}
    needles |= {p["wifi_password"] for p in properties.values()}
    assert await where_found(env.pool, sorted(needles)) == {}
