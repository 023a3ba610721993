"""Task details: the comments and requirements of a task (``GET /task/{id}/comments``, ``.../requirements``).

A deleted task takes both with it (404).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from .records import TaskContext, TaskRow, fmt_ts
from .store import CompanyData

__all__ = [
    "COMMENT_WINDOW",
    "DETAIL_KINDS",
    "Comment",
    "add_comments",
    "delete_comments",
    "open_task_ids",
    "render_comments",
    "render_requirements",
    "seed_comments",
]

COMMENT_WINDOW = timedelta(days=2)
DETAIL_KINDS = ("task_details", "task_comments", "task_requirements")

_COMMENTS = (
    "Guest reported the dishwasher is noisy.",
    "Key box code changed, see access notes.",
    "Running 20 minutes late.",
    "Extra linens needed next time.",
    "Owner asked for photos of the deck.",
    "Checked, all fine.",
    "Spare batteries are in the hallway closet.",
    "Please double-check the hot tub cover.",
)
_SECTIONS = ("Kitchen", "Living room", "Bathroom", "Bedroom", "Outdoor", "Entry")
_ACTIONS = (
    ("Wipe counters", "Empty dishwasher"),
    ("Vacuum floors",),
    ("Replace towels", "Restock toiletries"),
    ("Make beds", "Check under beds"),
    ("Sweep deck", "Check grill"),
    ("Check smoke detector",),
)
_ELEMENTS = ("Counter", "Sofa", "Shower", "Bed", "Deck", "Door", None)
_TYPES = ("checkbox", "text", "photo", "number")
_RESPONSES = {"checkbox": "yes", "text": "Done as listed.", "photo": "attached", "number": "2"}


class Comment(NamedTuple):
    """One stored comment: its id, when it was written, and a seed for its text and author.

    Comments are stored per task in ``CompanyData.comments`` as compact ``Comment`` tuples and
    rendered when served. A task is born with 0-3 comments (from its own seed, so the company's
    main random sequence is untouched); the clock adds comments to *open* tasks and deletes some,
    and neither moves the task's ``updated_at`` (the worst case of BREEZEWAY_API.md). Open, here:
    not finished, or finished within ``COMMENT_WINDOW`` (2 days; decided here, inside the
    daemon's default sweep window of 7 days).
    """

    id: int
    created: datetime
    seed: int


def seed_comments(data: CompanyData, task: TaskRow, now: datetime) -> None:
    """A new task's first comments, written between its creation and ``now``."""
    rng = random.Random(task.seed ^ 0x5EED)
    count = rng.choice((0, 0, 1, 1, 2, 3))
    if not count:
        return
    span = max((now - task.created).total_seconds(), 0.0)
    times = sorted(task.created + timedelta(seconds=int(span * rng.random())) for _ in range(count))
    data.comments[task.id] = [
        Comment(data.next_id("comments"), when, rng.getrandbits(32)) for when in times
    ]


def open_task_ids(data: CompanyData, when: datetime) -> list[int]:
    """Tasks that can still get comments: not finished, or finished within ``COMMENT_WINDOW``."""
    since = when - COMMENT_WINDOW
    return [tid for tid, t in data.tasks.items() if t.finished is None or t.finished >= since]


def add_comments(data: CompanyData, rng: random.Random, n: int, when: datetime) -> int:
    """Add ``n`` comments to random open tasks, at ``when``; ``updated_at`` does not move."""
    pool = open_task_ids(data, when)
    if not pool:
        return 0
    for _ in range(n):
        tid = rng.choice(pool)
        data.comments.setdefault(tid, []).append(
            Comment(data.next_id("comments"), when, rng.getrandbits(32))
        )
    return n


def delete_comments(data: CompanyData, rng: random.Random, n: int, when: datetime) -> int:
    """Delete ``n`` random comments of open tasks (an author removing one)."""
    pool = [tid for tid in open_task_ids(data, when) if data.comments.get(tid)]
    done = 0
    for tid in rng.sample(pool, min(n, len(pool))):
        comments = data.comments[tid]
        comments.pop(rng.randrange(len(comments)))
        if not comments:
            del data.comments[tid]
        done += 1
    return done


def render_comments(
    ctx: TaskContext, task_id: int, comments: list[Comment]
) -> list[dict[str, Any]]:
    """The answer of ``GET /task/{id}/comments``: oldest first."""
    out = []
    for c in comments:
        author = ctx.people[c.seed % len(ctx.people)] if ctx.people else None
        out.append(
            {
                "id": c.id,
                "comment": _COMMENTS[c.seed % len(_COMMENTS)],
                "created_at": fmt_ts(c.created, c.id % 2 == 0),
                "created_by": {"id": author[0], "name": author[1]} if author else None,
            }
        )
    return out


def render_requirements(task: TaskRow) -> list[dict[str, Any]]:
    """The answer of ``GET /task/{id}/requirements`` for the task as it stands.

    Requirements are a pure function of the task's state (its seed, kind and status): a checklist
    of 3-6 items, answered as the task is worked (none while created or assigned, the first half
    while in progress, all but about one in ten once finished). While the task is not started it
    also carries a "Before you start" item that leaves the list when work starts: a list shrinks
    as well as grows. Every status change moves the task's ``updated_at``.
    """
    r = random.Random(task.seed ^ 0xC4EC).random
    count = 3 + int(r() * 4)
    status = task.status
    items: list[dict[str, Any]] = []
    if status < 2:
        items.append(_item("Before you start", ["Confirm arrival"], "checkbox", False, None, None))
    for k in range(count):
        kind = _TYPES[int(r() * len(_TYPES))]
        section = _SECTIONS[int(r() * len(_SECTIONS))]
        actions = list(_ACTIONS[int(r() * len(_ACTIONS))])
        element = _ELEMENTS[int(r() * len(_ELEMENTS))]
        skipped = r() < 0.1
        answered = status >= 3 and not skipped or status == 2 and k < count // 2
        response = _RESPONSES[kind] if answered else None
        photo_url = f"https://photos.example.com/req/{task.id:x}/{k}.jpg"
        items.append(_item(section, actions, kind, kind == "photo", element, response, photo_url))
    return items


def _item(
    section: str,
    actions: list[str],
    kind: str,
    photo_required: bool,
    element: str | None,
    response: str | None,
    photo_url: str | None = None,
) -> dict[str, Any]:
    return {
        "section_name": section,
        "action": actions,
        "response": response,
        "type_requirement": kind,
        "photo_required": photo_required,
        "photos": [photo_url] if photo_required and response is not None else [],
        "note": "Checked." if response is not None and kind == "text" else None,
        "home_element_name": element,
    }
