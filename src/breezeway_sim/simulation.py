"""The simulator itself: companies, their data, the clock, tokens, faults and counters.

(``Simulator``: data per company, ``now``/``advance``, ``truth``, the scope rules.)
"""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from .auth import TokenAuthority
from .badrecords import bad_records_for
from .companies import Company, make_companies
from .details import DETAIL_KINDS, render_comments, render_requirements
from .evolve import Rates, advance_company
from .faults import Faults
from .generate import Scale, generate_company
from .limits import AuthLimiter, DataLimiter
from .records import render_task, row_blob, task_blob
from .stats import Stats
from .store import ENTITIES, TAG_KINDS, CompanyData
from .webhooks import WebhookHub

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["Simulator"]


class Simulator:
    """Simulated Breezeway API state for ``companies`` companies.

    >>> sim = Simulator(companies=2, scale="small", seed=1)
    >>> sim.companies[0].company_id, sim.companies[0].client_id
    (1001, 'sim-client-1')

    * Data is generated per company on first use (``sim.prepare()`` generates all now), each
      company at its scale of the mix (``Scale.mix``: ``prod`` is one company of 5,000 properties
      and 60,000 tasks, then seven of 60-500 properties). Measured on a 2-CPU machine: a ``dense``
      company (50,000 tasks) takes 1.5-2 s and about 50 MB; serving all its tasks once caches
      their JSON (about 1.75 kB each, 90 MB in all). ``truth(cid, "tasks")`` of 50,000 tasks
      builds as many dicts: 2-7 s and about 400 MB while the caller holds them.
    * ``sim.now()`` is the simulated time: the real UTC time plus everything ``advance`` added. It
      only moves forward, and a record's ``updated_at`` is never earlier than the real time of its
      change. Note: a client that bounds a task ``updated_at`` range with its own (real) today
      misses changes the simulated clock put on a later day; advance by hours, not days, when the
      client under test uses real time.
    * ``sim.advance(hours)`` moves the clock and applies the events of that span at ``sim.rates``
      (see ``evolve``); it answers what it did per company.
    * ``sim.truth(company_id, entity)`` is what a perfect sync would hold now: every record that
      exists, keyed by id (tags: by ``(tag_type, id)``), each exactly as the API serializes it;
      ``task_comments`` and ``task_requirements`` give the task details (see ``details``).
      Injected bad records are never in it (see ``sim.bad_records``).
    * The company scope rule (decided here): a ``company_id`` parameter naming another company
      answers ``403 {"error": "Forbidden", ...}``; a task id or ``home_id`` of another company is
      simply not found (404 / empty listing).
    * Disabling a client (``disable_client``) makes its login and refresh answer
      ``200 {"error": "inactive client"}`` and its data requests 401, until enabled again.
    """

    def __init__(
        self,
        companies: int = 1,
        scale: Scale | str | tuple[Scale, ...] = "small",
        seed: int = 1,
        *,
        rates: Rates | None = None,
        faults: Faults | None = None,
        anchor: datetime | None = None,
    ) -> None:
        """``anchor``: where generated history ends (default: now, to the minute); give the
        same anchor to get byte-identical data from two simulators. Must not be in the future."""
        real_now = datetime.now(UTC)
        if anchor is None:
            anchor = real_now.replace(second=0, microsecond=0)
        elif anchor.tzinfo is None:
            anchor = anchor.replace(tzinfo=UTC)
        if anchor > real_now:
            raise ValueError("anchor must not be in the future")
        self.seed = seed
        self.scales = Scale.mix(scale)
        self.scale = self.scales[0]  # company 1's
        self.companies: list[Company] = make_companies(companies)
        self.rates = rates or Rates()
        self.faults = faults or Faults()
        self.stats = Stats()
        self.anchor = anchor
        self.tokens = TokenAuthority(
            hashlib.sha256(f"breezeway-simulator-{seed}".encode()).digest(), self.companies
        )
        self.data_limiter = DataLimiter()
        self.auth_limiter = AuthLimiter()
        self.disabled: set[int] = set()
        self.fault_rng = random.Random(seed * 7 + 3)
        self._by_id = {c.company_id: c for c in self.companies}
        self._by_client = {c.client_id: c for c in self.companies}
        self._data: dict[int, CompanyData] = {}
        self._offset = timedelta(0)
        self._last_now = real_now
        self._advances = 0
        self.webhooks = WebhookHub(self)

    # companies and data

    def company(self, company_id: int) -> Company:
        """The company with this id (``KeyError`` if none)."""
        return self._by_id[company_id]

    def company_by_client(self, client_id: str) -> Company | None:
        return self._by_client.get(client_id)

    def data(self, company_id: int) -> CompanyData:
        """The company's live records, generated on first use."""
        found = self._data.get(company_id)
        if found is None:
            company = self._by_id[company_id]
            found = self._data[company_id] = generate_company(
                company, Scale.for_company(self.scales, company.index), self.seed, self.anchor
            )
        return found

    def prepare(self) -> None:
        """Generate every company's data now (otherwise it happens on first use)."""
        for company in self.companies:
            self.data(company.company_id)

    # clock

    def now(self) -> datetime:
        """Simulated current time (aware UTC): real time plus what ``advance`` added."""
        now = datetime.now(UTC) + self._offset
        if now < self._last_now:
            now = self._last_now
        self._last_now = now
        return now

    def advance(self, hours: float = 1.0) -> dict[int, dict[str, dict[str, int]]]:
        """Move the clock ``hours`` on, creating, changing and deleting records at ``rates``.

        Answers ``{company_id: {entity: {"created", "changed", "deleted"}}}``.
        """
        if hours < 0:
            raise ValueError("the clock only moves forward")
        start = self.now()
        self._offset += timedelta(hours=hours)
        end = start + timedelta(hours=hours)
        self._last_now = max(self._last_now, end)
        self._advances += 1
        done = {}
        for company in self.companies:
            rng = random.Random((self.seed * 1_000_003 + company.index) * 10_007 + self._advances)
            done[company.company_id] = advance_company(
                self.data(company.company_id), self.rates, rng, start, end
            )
        self.webhooks.notice()
        return done

    # ground truth

    def truth(self, company_id: int, entity: str) -> dict[Any, dict[str, Any]]:
        """Every record of ``entity`` that exists now, keyed by id (tags: ``(tag_type, id)``).

        Also the task details: ``task_details`` by task id (``{"comments", "requirements"}``
        as the two endpoints answer), ``task_comments`` by comment id (each with its
        ``task_id``), ``task_requirements`` by ``(task_id, position)``."""
        if entity not in ENTITIES and entity not in DETAIL_KINDS:
            known = ", ".join((*ENTITIES, *DETAIL_KINDS))
            raise ValueError(f"unknown entity {entity!r}; one of {known}")
        data = self.data(company_id)
        if entity == "task_comments":
            return {
                c["id"]: {**c, "task_id": tid}
                for tid, comments in data.comments.items()
                for c in render_comments(data.ctx, tid, comments)
            }
        if entity == "task_details":
            return {
                tid: {
                    "comments": render_comments(data.ctx, tid, data.comments.get(tid, [])),
                    "requirements": render_requirements(t),
                }
                for tid, t in data.tasks.items()
            }
        if entity == "task_requirements":
            return {
                (tid, position): item
                for tid, t in data.tasks.items()
                for position, item in enumerate(render_requirements(t))
            }
        if entity == "tasks":
            ctx = data.ctx
            return {tid: orjson.loads(task_blob(ctx, t)) for tid, t in data.tasks.items()}
        if entity == "tags":
            return {
                (kind, tid): orjson.loads(row_blob(row))
                for kind in TAG_KINDS
                for tid, row in data.tags[kind].items()
            }
        return {rid: orjson.loads(row_blob(row)) for rid, row in data.rows(entity).items()}

    def bad_records(self, company_id: int, entity: str) -> list[dict[str, Any]]:
        """The injected records the current ``faults.bad_records`` add to ``entity`` listings
        (``duplicate_id`` not included: it repeats a real record). For tasks they sit in the
        listing of ``bad_records_property(company_id)``."""
        data = self.data(company_id)
        return bad_records_for(
            data, entity, self.faults.bad_records, self.bad_record_template(data, entity)
        )

    def bad_records_property(self, company_id: int) -> int | None:
        """The property whose task listing carries the injected bad tasks (lowest id)."""
        data = self.data(company_id)
        return min(data.properties) if data.properties else None

    def bad_record_template(self, data: CompanyData, entity: str) -> dict[str, Any] | None:
        if entity == "tasks":
            pid = min(data.properties) if data.properties else None
            tasks = data.tasks_by_property.get(pid or 0) or {}
            first = min(tasks) if tasks else None
            return render_task(data.ctx, tasks[first]) if first is not None else None
        rows = data.rows(entity)
        return orjson.loads(row_blob(rows[min(rows)])) if rows else None

    # credentials

    def revoke_tokens(self, company_id: int) -> None:
        """Every access and refresh token of that company's client stops working now."""
        self.tokens.revoke(self.company(company_id))

    def disable_client(self, company_id: int, disabled: bool = True) -> None:
        """Deactivate (or reactivate) the company's API client."""
        self.company(company_id)
        if disabled:
            self.disabled.add(company_id)
        else:
            self.disabled.discard(company_id)

    # serving

    def asgi_app(self, control: bool = False) -> Starlette:
        """The Starlette app serving the API; ``control=True`` adds the ``/_sim/`` endpoints."""
        from .app import build_app

        return build_app(self, control=control)
