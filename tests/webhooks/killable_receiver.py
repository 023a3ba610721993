"""The webhook receiver (and, when asked, the worker) in its own process, for the test that
kills it with SIGKILL between acknowledging events and applying them.

Reads ``{"settings": {...}, "apply": bool}`` on stdin (secrets stay out of argv), listens
on a free port of 127.0.0.1 and prints ``listening <port>``, then ``stored <n>`` after
each committed event; with ``apply`` it applies pending events and prints ``idle`` each
time none is left.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from breezeway_daemon.config import load_settings
from breezeway_daemon.sync import SyncContext
from breezeway_daemon.webhooks.receiver import WebhookReceiver
from breezeway_daemon.webhooks.store import EventStore
from breezeway_daemon.webhooks.worker import EventWorker


async def main() -> None:
    job = json.loads(sys.stdin.read())
    settings = load_settings(Path("/nonexistent/bw-test.env"), **job["settings"])
    async with SyncContext.open(settings) as ctx:
        store = EventStore(ctx.pool, settings.webhook_store_timeout_s)
        worker = EventWorker(ctx.pool, ctx.api, store, settings.webhook_strict)
        stored = 0

        def on_stored() -> None:
            nonlocal stored
            stored += 1
            print(f"stored {stored}", flush=True)
            worker.wake()

        receiver = WebhookReceiver(settings, store, on_stored)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
        config = uvicorn.Config(
            Starlette(routes=receiver.routes()), lifespan="off", access_log=False, log_config=None
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        print(f"listening {sock.getsockname()[1]}", flush=True)
        if job["apply"]:
            while True:
                while await worker.apply_pending():
                    pass
                print("idle", flush=True)
                await worker.idle(3600)
        await serving


if __name__ == "__main__":
    asyncio.run(main())
