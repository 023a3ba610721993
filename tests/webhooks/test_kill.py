"""SIGKILL between acknowledging events and applying them loses none."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

from support.groundtruth import differences
from support.webhooks import SECRET, Hooks

KILLABLE = Path(__file__).with_name("killable_receiver.py")
PYTHON = Path(__file__).parents[2] / ".venv" / "bin" / "python"


async def start(hooks: Hooks, apply: bool) -> tuple[asyncio.subprocess.Process, int]:
    job = {"settings": {**json.loads(hooks.settings.model_dump_json()),
                        "database_url": hooks.settings.dsn(),
                        "webhook_secret": SECRET,
                        "regions": {name: {**r.model_dump(), "client_secret":
                                           r.client_secret.get_secret_value()}
                                    for name, r in hooks.settings.regions.items()}},
           "apply": apply}  # fmt: skip
    job["settings"].pop("env_file", None)
    proc = await asyncio.create_subprocess_exec(
        str(PYTHON), str(KILLABLE), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(job).encode())
    proc.stdin.close()
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line.startswith(b"listening "), line
    return proc, int(line.split()[1])


async def wait_for_line(proc: asyncio.subprocess.Process, wanted: bytes) -> None:
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        while (line := await proc.stdout.readline()) != wanted:
            assert line, "the process ended"


async def test_sigkill_after_acknowledging_loses_no_event(hooks: Hooks) -> None:
    sim = hooks.sim
    sim.rates.update({"properties": {"create": 0, "delete": 0}, "reservations": {"create": 0}})
    sim.rates.update({"tasks": {"change": 0.4, "create": 0.05, "delete": 0.05}})
    receiver, port = await start(hooks, apply=False)
    try:
        for company in sim.companies:
            url = f"http://127.0.0.1:{port}/webhooks/{SECRET}/task"
            await sim.webhooks.subscribe(company, "task", url)
        sim.advance(1)
        await sim.webhooks.drain(30)
    finally:
        receiver.send_signal(signal.SIGKILL)
        await receiver.wait()
    delivered = [e for e in sim.webhooks.log if e.outcome == "delivered"]
    assert len(delivered) == len(sim.webhooks.log) > 10  # every event acknowledged
    pending = await hooks.pool.fetchval(
        "SELECT count(*) FROM breezeway.webhook_events WHERE processed_at IS NULL"
    )
    assert pending == len(delivered)
    assert await differences(hooks.pool, sim, hooks.regions, ("tasks",)) != []  # not applied yet

    restarted, _ = await start(hooks, apply=True)
    try:
        await wait_for_line(restarted, b"idle\n")
    finally:
        restarted.send_signal(signal.SIGTERM)
        await restarted.wait()
    assert await differences(hooks.pool, sim, hooks.regions, ("tasks",)) == []
