"""Logging: JSON lines for pipes, ``<N>`` priorities for journald, console lines on a TTY."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from breezeway_daemon.logs import configure_logging


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch, saved_logging: None) -> Iterator[None]:
    """Each test configures logging its own way; the rest of the session keeps its own."""
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    yield
    structlog.contextvars.clear_contextvars()


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_lines_when_not_a_tty() -> None:
    out = io.StringIO()
    configure_logging("info", stream=out)
    log = structlog.get_logger("test")
    log.info("run_succeeded", records=12, duration_s=0.5)
    log.debug("not_shown")
    [line] = lines(out)
    event = json.loads(line)
    assert event["event"] == "run_succeeded" and event["records"] == 12
    assert event["level"] == "info"
    assert event["timestamp"].endswith("Z")  # UTC, ISO 8601


def test_journald_priority_prefix_when_journal_stream_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    out = io.StringIO()
    configure_logging("debug", stream=out)
    log = structlog.get_logger("test")
    log.error("boom")
    log.warning("careful")
    log.info("fine")
    log.debug("detail")
    try:
        raise ValueError("inner")
    except ValueError:
        log.exception("crashed")
    found = lines(out)
    assert [line[:3] for line in found] == ["<3>", "<4>", "<6>", "<7>", "<3>"]
    events = [json.loads(line[3:]) for line in found]
    assert [e["event"] for e in events] == ["boom", "careful", "fine", "detail", "crashed"]
    assert all("_priority" not in e for e in events)
    assert "ValueError: inner" in events[-1]["exception"]


def test_console_lines_on_a_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")  # a terminal wins: it is someone's screen
    out = FakeTty()
    configure_logging("info", stream=out)
    structlog.get_logger("test").warning("batch_finished", runs=12, failed=0)
    [line] = lines(out)
    assert not line.startswith(("{", "<"))
    assert "batch_finished" in line and "runs=12" in line and "warning" in line
    assert "\x1b[" not in line  # no colour codes


def test_force_json_overrides_the_tty_check() -> None:
    tty = FakeTty()
    configure_logging("info", stream=tty, force_json=True)
    structlog.get_logger("test").info("as_json")
    assert json.loads(lines(tty)[0])["event"] == "as_json"

    pipe = io.StringIO()
    configure_logging("info", stream=pipe, force_json=False)
    structlog.get_logger("test").info("as_console", n=1)
    [line] = lines(pipe)
    assert not line.startswith("{") and "as_console" in line and "n=1" in line


def test_level_filters_events() -> None:
    out = io.StringIO()
    configure_logging("warning", stream=out)
    log = structlog.get_logger("test")
    log.info("hidden")
    log.warning("shown")
    assert [json.loads(line)["event"] for line in lines(out)] == ["shown"]


async def test_context_variables_appear_on_every_event_of_their_task() -> None:
    out = io.StringIO()
    configure_logging("info", stream=out, force_json=True)
    log = structlog.get_logger("test")

    async def run(region: str, entity: str, run_id: int) -> None:
        with structlog.contextvars.bound_contextvars(region=region, entity=entity, run_id=run_id):
            log.info("run_started")
            await asyncio.sleep(0)  # the other task logs in between
            log.info("run_succeeded")

    await asyncio.gather(run("austin", "tasks", 1), run("smoky", "people", 2))
    log.info("outside")
    events = [json.loads(line) for line in lines(out)]
    by_run = {}
    for event in events:
        by_run.setdefault(event.get("run_id"), []).append(event)
    assert {(e["region"], e["entity"], e["event"]) for e in by_run[1]} == {
        ("austin", "tasks", "run_started"),
        ("austin", "tasks", "run_succeeded"),
    }
    assert {(e["region"], e["entity"]) for e in by_run[2]} == {("smoky", "people")}
    [outside] = by_run[None]
    assert "region" not in outside and "entity" not in outside


def test_values_of_secret_looking_keys_are_masked() -> None:
    out = io.StringIO()
    configure_logging("info", stream=out, force_json=True)
    secrets = {
        "client_secret": "cs-value-1",
        "password": "pw-value-2",
        "smtp_password": "pw-value-3",
        "access_token": "at-value-4",
        "refresh_token": "rt-value-5",
        "Authorization": "Bearer ab-value-6",
        "database_url": "postgresql://u:db-value-7@h/db",
        "api_key": "ak-value-8",
    }
    structlog.get_logger("test").info(
        "configured",
        **secrets,
        token_expires_at="2026-01-01T00:00:00Z",
        token_generation_count=3,
        region="austin",
        settings={"regions": {"austin": {"client_secret": "nested-value-9", "client_id": "id"}}},
    )
    line = out.getvalue()
    for value in [*secrets.values(), "nested-value-9"]:
        assert value.split()[-1] not in line
    event = json.loads(line)
    assert all(event[key] == "***" for key in secrets)
    assert event["token_expires_at"] == "2026-01-01T00:00:00Z"
    assert event["token_generation_count"] == 3 and event["region"] == "austin"
    assert event["settings"]["regions"]["austin"]["client_id"] == "id"


def test_library_logging_goes_to_stderr_at_warning(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    configure_logging("debug", stream=out)
    logging.getLogger("asyncpg.test").info("chatter")
    logging.getLogger("asyncpg.test").warning("worth knowing")
    assert out.getvalue() == ""
    err = capsys.readouterr().err
    assert "worth knowing" in err and "chatter" not in err
    root = logging.getLogger()
    assert root.level == logging.WARNING and len(root.handlers) == 1
