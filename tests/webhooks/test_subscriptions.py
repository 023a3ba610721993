"""``breezeway-daemon webhooks subscribe|list|unsubscribe`` against the simulator."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from breezeway_daemon import cli

from support.simenv import SimEnv, write_private
from support.webhooks import SECRET, Hooks, served_app


async def run_cli(
    env_file: Path, *argv: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    code = await asyncio.to_thread(cli.main, ["--env-file", str(env_file), *argv])
    out, err = capsys.readouterr()
    return code, out + err


@pytest.fixture
def env_file(hooks: Hooks, tmp_path: Path) -> Path:
    sim_env = SimEnv(hooks.sim, None, hooks.settings)  # type: ignore[arg-type]
    text = sim_env.env_file_text(webhook_secret=SECRET, state_dir=tmp_path)
    return write_private(tmp_path / "bw.env", text)


async def test_subscribe_list_unsubscribe_are_idempotent(
    hooks: Hooks, env_file: Path, capsys: pytest.CaptureFixture[str], saved_logging: None
) -> None:
    async with served_app(hooks.app) as base:
        code, out = await run_cli(env_file, "webhooks", "subscribe", "all", "--url", base,
                                  capsys=capsys)  # fmt: skip
        assert code == 0, out
        assert out.count("subscribed (id") == 4  # two kinds, two regions
        assert f"{base}/webhooks/***/task" in out
        code, again = await run_cli(env_file, "webhooks", "subscribe", "region_1", "--url", base,
                                    capsys=capsys)  # fmt: skip
        assert code == 0 and again.count("already subscribed") == 2
    hub = hooks.sim.webhooks
    assert len(hub.subscriptions) == 4
    assert {s.url for s in hub.subscriptions.values()} == {
        f"{base}/webhooks/{SECRET}/{kind}" for kind in ("task", "property-status")
    }
    assert hooks.receiver.counters.tests == 4  # each test event answered by the receiver
    code, listed = await run_cli(env_file, "webhooks", "list", capsys=capsys)
    assert code == 0 and listed.count(": id ") == 4
    code, removed = await run_cli(env_file, "webhooks", "unsubscribe", "region_2", capsys=capsys)
    assert code == 0 and removed.count("removed (id") == 2
    code, nothing = await run_cli(env_file, "webhooks", "unsubscribe", "region_2", capsys=capsys)
    assert code == 0 and "no subscriptions to remove" in nothing
    assert len(hub.subscriptions) == 2
    for text in (out, again, listed, removed, nothing):
        assert SECRET not in text


async def test_subscribe_says_when_the_listener_is_not_reachable(
    hooks: Hooks, env_file: Path, capsys: pytest.CaptureFixture[str], saved_logging: None
) -> None:
    code, out = await run_cli(env_file, "webhooks", "subscribe", "region_1", "--url",
                              "http://127.0.0.1:9", capsys=capsys)  # fmt: skip
    assert code == 1
    assert "test event" in out and "BREEZEWAY_HTTP_LISTEN" in out
    assert SECRET not in out
    assert hooks.sim.webhooks.subscriptions == {}
