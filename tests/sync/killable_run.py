"""A sync run in its own process, for the test that kills it with SIGKILL.

Reads ``{"settings": {...}, "region": ..., "entity": ...}`` on stdin (secrets stay out of
argv), runs one ``EntitySync`` and prints ``started <pid>`` then ``stored <n>`` after every
committed batch, flushing each line so the parent can kill it at a known point.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from pathlib import Path

from breezeway_daemon.config import load_settings
from breezeway_daemon.sync import EntitySync, SyncContext, SyncRequest


async def main() -> None:
    job = json.loads(sys.stdin.read())
    settings = load_settings(Path("/nonexistent/bw-test.env"), **job["settings"])
    print(f"started {os.getpid()}", flush=True)
    async with SyncContext.open(settings) as ctx:

        def progress(region: str, entity: str, counts: object) -> None:
            print(f"stored {counts.records_processed}", flush=True)  # type: ignore[attr-defined]

        ctx = dataclasses.replace(ctx, on_progress=progress)
        result = await EntitySync(ctx, SyncRequest(job["region"], job["entity"])).run()
        print(f"finished {result.status}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
