"""The HTTP listener's life in the daemon: off by default, a clear error when its address
is taken, and a reload cannot move it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from breezeway_daemon.config import ConfigError, load_settings
from breezeway_daemon.http import parse_listen_address

from support.monitoring import Scrape, ServedDaemon
from support.simenv import SimEnv


@pytest.mark.parametrize(
    ("text", "shown"),
    [("9464", "127.0.0.1:9464"), (":9464", "127.0.0.1:9464"), ("0.0.0.0:80", "0.0.0.0:80"),
     ("[::1]:9464", "[::1]:9464"), ("localhost:0", "localhost:0")],
)  # fmt: skip
def test_listen_addresses(text: str, shown: str) -> None:
    assert str(parse_listen_address(text)) == shown


@pytest.mark.parametrize("text", ["", "host", "1.2.3.4:99999", "a b:1", "::1:80", "http://x:1"])
def test_a_bad_listen_address_is_one_line_naming_the_setting(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^BREEZEWAY_HTTP_LISTEN: ") as caught:
        load_settings(Path("/nonexistent/bw.env"), http_listen=text or " ")
    assert "\n" not in str(caught.value)


def test_the_listener_is_off_by_default_and_its_server_is_not_loaded() -> None:
    """uvicorn is imported only when the listener starts (starlette, small, is imported by
    the webhook receiver's module, which the daemon imports)."""
    assert load_settings(Path("/nonexistent/bw.env")).http_listen is None
    code = (
        "import sys, breezeway_daemon.cli, breezeway_daemon.daemon; "
        "print(sorted(m for m in ('uvicorn', 'breezeway_daemon.http.listener') "
        "if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"


async def test_an_address_in_use_stops_the_start_with_one_line(served_daemon) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon: ServedDaemon = await served_daemon(
            http_listen=f"127.0.0.1:{port}", wait_ready=False
        )
        assert await daemon.wait_exit(30) == 1
    failed = daemon.events[await daemon.wait_event("daemon_start_failed")]
    assert failed["error"].startswith(f"BREEZEWAY_HTTP_LISTEN: cannot listen on 127.0.0.1:{port}: ")
    assert not any(event["event"] == "daemon_ready" for event in daemon.events)


async def test_a_reload_that_moves_the_listener_says_it_needs_a_restart(served_daemon) -> None:
    daemon: ServedDaemon = await served_daemon()
    text = daemon.env_file.read_text()
    daemon.env_file.write_text(
        text.replace("BREEZEWAY_HTTP_LISTEN=127.0.0.1:0", "BREEZEWAY_HTTP_LISTEN=9")
    )
    daemon.signal(signal.SIGHUP)
    warning = daemon.events[await daemon.wait_event("config_change_needs_restart")]
    assert warning["settings"] == ["http_listen"]
    await daemon.wait_event("config_reloaded")
    assert (await daemon.healthz())[0] == 200  # still where it was
    assert await daemon.stop() == 0


async def test_the_listener_answers_as_soon_as_systemd_hears_ready(served_daemon) -> None:
    with socket.socket() as probe:  # a free port, known before the daemon starts
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon: ServedDaemon = await served_daemon(http_listen=f"127.0.0.1:{port}", wait_ready=False)
    await daemon.notify.wait_for(lambda message: message.get("READY") == "1")
    daemon.url = f"http://127.0.0.1:{port}"
    status, body = await daemon.healthz()
    assert status == 200 and body["status"] == "ok", body


async def test_the_webhook_receiver_is_served_by_the_same_listener_and_counted(
    served_daemon, sim_env: SimEnv
) -> None:
    secret = "fake-webhook-secret-for-tests-0123456789"
    daemon: ServedDaemon = await served_daemon(webhook_secret=secret, health_probe_s=1)
    await daemon.wait_event("webhook_receiver_on")
    company = sim_env.regions["region_1"]
    async with httpx.AsyncClient(base_url=daemon.url, timeout=10) as client:
        test_event = {"event": "test_webhook_event"}
        tested = await client.post(f"/webhooks/{secret}/task", json=test_event)
        refused = await client.post(f"/webhooks/{'x' * len(secret)}/task", json=test_event)
        # A task the API does not know: stored, then finished by the worker.
        event = {"event": "task-updated", "company_id": company, "task_id": 987654321}
        stored = await client.post(f"/webhooks/{secret}/task", json=event)
    assert tested.status_code == 200 and stored.status_code == 200, (tested.text, stored.text)
    assert refused.status_code == 404

    def settled(scrape: Scrape) -> bool:
        return scrape.value("breezeway_webhook_events_processed_total") == 1 and (
            scrape.value("breezeway_webhook_events_pending") == 0
        )

    scrape = await daemon.until_scraped(settled)
    assert scrape.value("breezeway_webhook_events_received_total", kind="task") == 1
    assert scrape.value("breezeway_webhook_events_refused_total", reason="wrong_secret") == 1
    assert scrape.value("breezeway_webhook_events_not_stored_total") == 0
    assert (await daemon.healthz())[0] == 200
    assert await daemon.stop() == 0
    assert not any(secret in line for line in daemon.raw_lines)
