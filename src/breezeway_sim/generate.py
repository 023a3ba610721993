"""Deterministic data generation: a company's records from a seed.

``generate_company`` builds a company's records (what it generates: its docstring);
``Builder`` makes single records, which the clock (``evolve``) also uses.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from . import vocab
from .companies import Company
from .details import seed_comments
from .records import Row, TaskRow, external_reservation_id, fmt_ts
from .store import TAG_KINDS, CompanyData

__all__ = ["PRESETS", "Builder", "Scale", "generate_company"]


@dataclass(frozen=True)
class Scale:
    """How much data each company has."""

    properties: int = 6
    reservations_per_property: int = 4
    tasks_per_property: int = 8
    people: int = 10
    supplies: int = 8
    tags: int = 6  # per kind (task, property, reservation)

    @classmethod
    def of(cls, value: Scale | str) -> Scale:
        """A ``Scale`` from itself or a preset name: a mix's first (largest) company."""
        return cls.mix(value)[0]

    @classmethod
    def mix(cls, value: Scale | str | tuple[Scale, ...]) -> tuple[Scale, ...]:
        """The scales of a preset (``small``, ``dense``, ``prod``), a ``Scale`` or a tuple:
        company 1 gets the first, the others cycle through the rest (see ``for_company``)."""
        if isinstance(value, Scale):
            return (value,)
        if isinstance(value, tuple) and value and all(isinstance(s, Scale) for s in value):
            return value
        try:
            found = PRESETS[value]  # type: ignore[index]
        except (KeyError, TypeError):
            raise ValueError(f"unknown scale {value!r}; presets: {', '.join(PRESETS)}") from None
        return found if isinstance(found, tuple) else (found,)

    @staticmethod
    def for_company(scales: tuple[Scale, ...], index: int) -> Scale:
        """The scale of company ``index`` (1-based) in a mix."""
        if index <= len(scales):
            return scales[index - 1]
        rest = scales[1:] or scales
        return rest[(index - 2) % len(rest)]


def _smaller(properties: int) -> Scale:
    return Scale(properties=properties, reservations_per_property=10, tasks_per_property=44,
                 people=60, supplies=60, tags=20)  # fmt: skip


PRESETS: dict[str, Scale | tuple[Scale, ...]] = {
    "small": Scale(),
    # The zero-setup demo (8 companies), and a tiny one for its tests.
    "demo": Scale(properties=40, reservations_per_property=8, tasks_per_property=24, people=30, supplies=25, tags=10),
    "tiny": Scale(properties=3, reservations_per_property=2, tasks_per_property=3, people=3, supplies=2, tags=2),
    # bench/sync.py: 8 companies of 80 properties and 12,000 tasks (a full run of about one
    # rate window), and fifty small companies of 40 properties and 800 tasks.
    "bench": Scale(properties=80, reservations_per_property=8, tasks_per_property=150, people=30, supplies=30, tags=10),
    "fifty": Scale(properties=40, reservations_per_property=6, tasks_per_property=20, people=20, supplies=20, tags=5),
    # One company of 500 properties with 100 tasks each: long task listings (bench/simulator.py).
    "dense": Scale(properties=500, reservations_per_property=10, tasks_per_property=100, people=200, supplies=150, tags=80),
    # The production mix: one credential of 5,000 properties and 60,000 tasks, then seven of
    # 60-500 properties (1,800 properties, 79,200 tasks): 139,200 tasks across 8 companies.
    # More companies cycle through the seven.
    "prod": (
        Scale(properties=5000, reservations_per_property=6, tasks_per_property=12, people=400, supplies=150, tags=80),
        *(_smaller(n) for n in (500, 400, 300, 240, 180, 120, 60)),
    ),
}  # fmt: skip

_PROPERTY_STATUS_WEIGHTS = (("active", 80), ("inactive", 12), ("pending_delete", 4), ("deleted", 4))
_PERSON_STATUS_WEIGHTS = (("active", 80), ("invited", 8), ("inactive", 12))


def _weighted(rng: random.Random, weights: tuple[tuple[str, int], ...]) -> str:
    roll = rng.randrange(sum(w for _, w in weights))
    for value, weight in weights:
        if roll < weight:
            return value
        roll -= weight
    raise AssertionError("unreachable")


def _between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    """A whole-second instant in ``[start, end]`` (``start`` if the span is empty)."""
    span = int((end - start).total_seconds())
    return start + timedelta(seconds=rng.randint(0, span)) if span > 0 else start


class Builder:
    """Makes records for one company; all randomness comes from ``rng``."""

    def __init__(self, data: CompanyData, rng: random.Random) -> None:
        self.data = data
        self.rng = rng
        self.company: Company = data.company

    # properties

    def property(self, created: datetime, updated: datetime) -> Row:
        rng, company = self.rng, self.company
        pid = self.data.next_id("properties")
        local = pid - company.id_base
        city, state, zip_prefix, lat, lon = vocab.CITIES[rng.randrange(len(vocab.CITIES))]
        street = rng.choice(vocab.STREET_NAMES)
        noun = rng.choice(vocab.PROPERTY_NOUNS)
        name = (
            f"{rng.choice(vocab.PROPERTY_ADJECTIVES)} {noun} on {street}"
            if rng.random() < 0.6
            else f"{street} {noun} #{local % 1000}"
        )
        bedrooms = rng.randint(1, 6)
        latitude: float | str = round(lat + rng.uniform(-0.08, 0.08), 6)
        longitude: float | str = round(lon + rng.uniform(-0.08, 0.08), 6)
        if pid % 5 == 0:  # the contract allows numbers or strings
            latitude, longitude = str(latitude), str(longitude)
        children = self.data.next_id("children", 16)
        groups = [
            {"id": 900 + g, "name": vocab.GROUP_NAMES[g], "parent_group_id": None if g < 2 else 900}
            for g in sorted(rng.sample(range(len(vocab.GROUP_NAMES)), rng.randint(0, 2)))
        ]
        photos = [
            {
                "id": children + k,
                "url": f"https://photos.example.com/properties/{pid}/{k}.jpg",
                "default": k == 0,
                "caption": rng.choice(
                    ("Front", "Living room", "Kitchen", "Primary bedroom", "View")
                ),
                "original_url": f"https://photos.example.com/properties/{pid}/{k}_orig.jpg",
            }
            for k in range(rng.randint(0, 4))
        ]
        reference_property_id = f"PMS-{local:06d}"
        data: dict[str, Any] = {
            "id": pid,
            "company_id": company.company_id,
            "name": name,
            "status": _weighted(rng, _PROPERTY_STATUS_WEIGHTS),
            "address1": f"{rng.randint(10, 9999)} {street} {rng.choice(vocab.STREET_KINDS)}",
            "address2": f"Unit {rng.randint(1, 40)}{rng.choice('ABCD')}"
            if rng.random() < 0.25
            else None,
            "building": f"Building {rng.choice('ABCDEFG')}" if rng.random() < 0.1 else None,
            "city": city,
            "state": state,
            "zipcode": f"{zip_prefix}{rng.randint(0, 99):02d}",
            "country": "US",
            "latitude": latitude,
            "longitude": longitude,
            "display": f"{name} ({city}, {state})",
            "bedrooms": bedrooms,
            "bathrooms": rng.choice((1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)) if bedrooms > 1 else 1.0,
            "living_area": 350 * bedrooms + rng.randrange(0, 900, 10),
            "year_built": rng.randint(1925, 2023),
            "wifi_name": f"{street}{noun.replace(' ', '')}Guest",
            "wifi_password": f"sim-wifi-{rng.randint(1000, 9999)}",
            "reference_company_id": company.reference_company_id,
            "reference_external_property_id": f"EXT-{company.company_id}-{local:06d}",
            "reference_property_id": reference_property_id,
            "notes": {
                "about": rng.choice(vocab.NOTE_ABOUT).format(n=bedrooms * 2),
                "access": rng.choice(vocab.NOTE_ACCESS),
                "general": None if rng.random() < 0.5 else "Owner visits twice a year.",
                "guest_access": "Self check-in",
                "direction": f"From the highway take exit {rng.randint(1, 120)}, then follow {street}.",
                "trash_info": rng.choice(vocab.NOTE_TRASH),
                "wifi": "Router in the hall closet.",
            },
            "groups": groups,
            "photos": photos,
        }
        row = Row(pid, created, updated, data)
        self.data.add_property(row, reference_property_id)
        return row

    # reservations

    def reservation(
        self,
        prop: Row,
        checkin: date,
        nights: int,
        created: datetime,
        updated: datetime,
        status: str = "active",
    ) -> Row:
        rng = self.rng
        rid = self.data.next_id("reservations")
        checkout = checkin + timedelta(days=nights)
        tags_pool = list(self.data.tags["reservation"].values())
        tags = [
            {"id": t.id, "name": t.data["name"], "company_id": self.company.company_id}
            for t in (rng.sample(tags_pool, min(len(tags_pool), rng.choice((0, 0, 1, 2)))))
        ]
        n_guests = rng.randint(1, 3)
        guests = []
        for _ in range(n_guests):
            first, last = rng.choice(vocab.FIRST_NAMES), rng.choice(vocab.LAST_NAMES)
            guests.append(
                {
                    "first_name": first,
                    "last_name": last,
                    "email": f"{first}.{last}@guest.example.com".lower().replace("'", ""),
                    "phone": f"+1555{rng.randint(1000000, 9999999)}",
                }
            )
        owner = rng.random() < 0.08
        guest_type = vocab.GUEST_TYPES[1 if owner else 0]
        stay_type = vocab.STAY_TYPES[2 if owner else (1 if nights >= 28 else 0)]
        zoned = rid % 2 == 0
        pdata = prop.data
        data: dict[str, Any] = {
            "id": rid,
            "property_id": prop.id,
            "status": status,
            "checkin_date": checkin.isoformat(),
            "checkin_time": "16:00:00",
            "checkin_early": rng.random() < 0.1,
            "checkout_date": checkout.isoformat(),
            "checkout_time": "10:00:00",
            "checkout_late": rng.random() < 0.1,
            "access_code": f"{rng.randint(0, 9999):04d}",
            "guide_url": f"https://guide.example.com/stay/{rid:x}",
            "note": rng.choice(vocab.RESERVATION_NOTES) or None,
            "adults": rng.randint(1, 6),
            "children": rng.choice((0, 0, 0, 1, 2, 3)),
            "pets": rng.choice((0, 0, 0, 0, 1)),
            "source": "owner" if owner else rng.choice(vocab.RESERVATION_SOURCES[:-1]),
            "guests": guests,
            "tags": tags,
            "flags": ["vip"] if rng.random() < 0.05 else [],
            "type_guest": {"code": guest_type[0], "name": guest_type[1]},
            "type_stay": {"code": stay_type[0], "name": stay_type[1]},
            "type_reservation": {"code": "block" if owner else "reservation"},
            "reference_external_property_id": pdata.get("reference_external_property_id"),
            "reference_property_id": pdata.get("reference_property_id"),
            "reference_reservation_id": external_reservation_id(rid),
            "created_at": fmt_ts(created, zoned),
            "updated_at": fmt_ts(updated, not zoned),
        }
        row = Row(rid, created, updated, data, parent=prop.id)
        self.data.add_reservation(row)
        return row

    # tasks

    def task(
        self,
        home_id: int,
        *,
        kind: int,
        department: int,
        scheduled: date,
        created: datetime,
        now: datetime,
        linked: int | None,
        status: int | None = None,
    ) -> TaskRow:
        """A task as it stands at ``now``; ``status`` None picks one that fits the dates."""
        rng = self.rng
        started = finished = None
        sched_at = datetime(
            scheduled.year, scheduled.month, scheduled.day, 9, tzinfo=created.tzinfo
        )
        if status is None:
            if sched_at + timedelta(days=3) < now:  # long past: nearly all finished
                roll = rng.random()
                status = 4 if roll < 0.55 else 3 if roll < 0.97 else 2 if roll < 0.98 else 1
            elif sched_at + timedelta(hours=8) < now:  # the last days: some still open
                roll = rng.random()
                status = 4 if roll < 0.45 else 3 if roll < 0.85 else 2 if roll < 0.9 else 1
            else:
                status = 1 if rng.random() < 0.3 else 0
        if status >= 2:
            started = max(created, min(now, sched_at + timedelta(minutes=rng.randint(0, 240))))
        if status >= 3:
            assert started is not None
            finished = min(now, started + timedelta(minutes=rng.randint(20, 240)))
        latest = finished or started or created
        updated = min(now, latest + timedelta(minutes=rng.randint(0, 120)))
        updated = max(updated, created)
        task = TaskRow(
            id=self.data.next_id("tasks"),
            home_id=home_id,
            seed=rng.getrandbits(48),
            kind=kind,
            department=department,
            status=status,
            created=created,
            updated=updated,
            scheduled=scheduled,
            started=started,
            finished=finished,
            linked=linked,
            child_base=self.data.next_id("children", 16),
        )
        self.data.add_task(task)
        seed_comments(self.data, task, now)
        return task

    # people, supplies, tags

    def person(self, created: datetime, status: str | None = None) -> Row:
        rng = self.rng
        pid = self.data.next_id("people")
        first, last = rng.choice(vocab.FIRST_NAMES), rng.choice(vocab.LAST_NAMES)
        status = status or _weighted(rng, _PERSON_STATUS_WEIGHTS)
        role = rng.choice(vocab.ROLES)
        depts = sorted(rng.sample(vocab.DEPARTMENTS, rng.randint(1, 2)))
        availability = {
            day: [{"start": f"{rng.randint(7, 10):02d}:00", "end": f"{rng.randint(15, 19):02d}:00"}]
            for day in vocab.WEEKDAYS
            if rng.random() < 0.7
        }
        data: dict[str, Any] = {
            "id": pid,
            "first_name": first,
            "last_name": last,
            "active": status == "active",
            "accept_decline_tasks": rng.random() < 0.5,
            "emails": [f"{first}.{last}.{pid % 10000}@staff.example.com".lower().replace("'", "")],
            "employee_code": f"E{pid % 100000:05d}",
            "groups": [
                {
                    "id": 950 + rng.randint(0, 3),
                    "name": rng.choice(("North", "South", "East", "West")),
                }
            ],
            "type_departments": depts,
            "type_role": {"code": role, "name": role.title()},
            "availability": availability,
        }
        row = Row(pid, created, created, data)
        self.data.people[pid] = row
        self.data.person_status[pid] = status
        self.data.changed()
        return row

    def supply(self, created: datetime, updated: datetime) -> Row:
        rng = self.rng
        sid = self.data.next_id("supplies")
        name = rng.choice(vocab.SUPPLY_NAMES)
        stock = rng.randint(0, 400)
        low = rng.choice((5, 10, 20, 50))
        status = vocab.STOCK_STATUSES[0 if stock > low else (1 if stock else 2)]
        zoned = sid % 2 == 0
        data: dict[str, Any] = {
            "id": sid,
            "company_id": self.company.company_id,
            "name": name,
            "description": f"{name} for guest units" if rng.random() < 0.7 else None,
            "size": rng.choice(vocab.SUPPLY_SIZES),
            "internal_id": f"SKU-{sid % 1000000:06d}",
            "unit_cost": round(rng.uniform(0.5, 60), 2),
            "stock_count": stock,
            "low_stock_alert": rng.random() < 0.6,
            "low_stock_count": low,
            "supply_category_id": 300 + rng.randint(1, 8),
            "type_stock_status": {"code": status[0], "name": status[1]},
            "created_at": fmt_ts(created, zoned),
            "updated_at": fmt_ts(updated, not zoned),
        }
        row = Row(sid, created, updated, data)
        self.data.supplies[sid] = row
        self.data.changed()
        return row

    def tag(self, kind: str, created: datetime) -> Row:
        rng = self.rng
        tid = self.data.next_id("tags")
        word = rng.choice(vocab.TAG_WORDS)
        data: dict[str, Any] = {
            "id": tid,
            "name": f"{word} {tid % 1000}",
            "company_id": self.company.company_id,
        }
        if kind == "task":
            data["description"] = None if rng.random() < 0.5 else f"Tasks about {word.lower()}"
        row = Row(tid, created, created, data)
        self.data.tags[kind][tid] = row
        self.data.changed()
        return row


def generate_company(company: Company, scale: Scale, seed: int, anchor: datetime) -> CompanyData:
    """All records of ``company`` as they stand at ``anchor``.

    ``generate_company(company, scale, seed, anchor)`` builds the company's records as they stand
    at ``anchor`` (the simulator's start, truncated to the minute): every generated ``created_at``
    and ``updated_at`` is at or before it. The same seed, scale and anchor give the same records.

    What is generated, per company:

    * properties: status shares active 80 %, inactive 12 %, pending_delete 4 %, deleted 4 %;
      US vacation-rental addresses, notes, groups, photos;
    * reservations: ``reservations_per_property`` stays per property, spread from about 300 days
      ago to about 120 days ahead, so every checkout date is within the last ~300 days or in the
      future (a backfill with ``checkout_date_ge`` 365 days back sees them all); 10 % cancelled;
    * tasks: ``tasks_per_property`` per property: a departure clean on each stay's checkout day
      (linked to it), a pre-arrival inspection before half of the stays, the rest maintenance,
      inspection, housekeeping and safety tasks over the last ~400 days and the next ~45; about
      5 % of those link to an old reservation id that no listing returns; tasks more than three
      days past are 97 % finished, those of the last three days 85 %, future ones created or
      assigned (at ``prod``: about 9 % of all tasks open);
    * people (active 80 %, invited 8 %, inactive 12 %), supplies, and ``tags`` tags of each kind.
    """
    data = CompanyData(company)
    rng = random.Random(seed * 1_000_003 + company.index)
    build = Builder(data, rng)
    today = anchor.date()
    year_ago = anchor - timedelta(days=400)

    for kind in TAG_KINDS:
        for _ in range(scale.tags):
            build.tag(kind, _between(rng, year_ago, anchor))
    for _ in range(scale.people):
        build.person(_between(rng, anchor - timedelta(days=900), anchor))
    for _ in range(scale.supplies):
        created = _between(rng, anchor - timedelta(days=700), anchor)
        build.supply(created, _between(rng, created, anchor))
    data.ctx.people = tuple(
        (r.id, f"{r.data['first_name']} {r.data['last_name']}", r.data["employee_code"])
        for r in data.people.values()
    )
    data.ctx.supplies = tuple(
        (r.id, r.data["name"], r.data["unit_cost"]) for r in data.supplies.values()
    )
    data.ctx.tags = tuple((r.id, r.data["name"]) for r in data.tags["task"].values())

    window_start = today - timedelta(days=300)
    window_days = 420
    n_res = scale.reservations_per_property
    for _ in range(scale.properties):
        p_created = _between(rng, anchor - timedelta(days=1500), anchor - timedelta(days=30))
        prop = build.property(p_created, _between(rng, p_created, anchor))
        stays: list[Row] = []
        slot = window_days / n_res if n_res else 0
        for i in range(n_res):
            nights = rng.randint(2, max(2, min(7, int(slot) - 1)))
            slot_start = window_start + timedelta(days=int(slot * i))
            checkin = slot_start + timedelta(days=rng.randint(0, max(0, int(slot) - nights - 1)))
            booked = datetime(checkin.year, checkin.month, checkin.day, tzinfo=anchor.tzinfo)
            created = min(
                anchor, booked - timedelta(days=rng.randint(1, 120), seconds=rng.randint(0, 86399))
            )
            created = max(created, p_created)
            status = "cancelled" if rng.random() < 0.1 else "active"
            stays.append(
                build.reservation(
                    prop, checkin, nights, created, _between(rng, created, anchor), status
                )
            )
        made = 0
        for stay in stays:
            if made >= scale.tasks_per_property:
                break
            if stay.data["status"] != "active":
                continue
            checkout = date.fromisoformat(stay.data["checkout_date"])
            build.task(
                prop.id,
                kind=1,
                department=0,
                scheduled=checkout,
                created=stay.created,
                now=anchor,
                linked=stay.id,
            )
            made += 1
            if made < scale.tasks_per_property and rng.random() < 0.5:
                checkin = date.fromisoformat(stay.data["checkin_date"])
                build.task(
                    prop.id,
                    kind=2,
                    department=1,
                    scheduled=checkin - timedelta(days=1),
                    created=stay.created,
                    now=anchor,
                    linked=stay.id,
                )
                made += 1
        for _ in range(scale.tasks_per_property - made):
            scheduled = today + timedelta(days=rng.randint(-400, 45))
            sched_at = datetime(
                scheduled.year, scheduled.month, scheduled.day, tzinfo=anchor.tzinfo
            )
            created = min(
                anchor, sched_at - timedelta(days=rng.randint(0, 30), seconds=rng.randint(0, 86399))
            )
            created = max(created, p_created)
            linked = (
                data.old_reservation_id(rng.randint(1, 99_999)) if rng.random() < 0.05 else None
            )
            build.task(
                prop.id,
                kind=0,
                department=rng.choice((0, 0, 1, 2, 2, 3)),
                scheduled=scheduled,
                created=created,
                now=anchor,
                linked=linked,
            )
    return data
