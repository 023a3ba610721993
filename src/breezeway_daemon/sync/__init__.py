"""The sync engine: runs of one region and entity, and batches of them.

- ``context``: what a run is asked (``SyncRequest``), what it answers
  (``RunResult``), and what the runs of a process share (``SyncContext``);
- ``run``: one run (``EntitySync``): its lease (``db.lease``) around its listing,
  stored in batches by the loader;
- ``listings``: how an entity is listed, one strategy per ``ListingMode``;
- ``batch``: a region's pipeline of runs in dependency order, and a batch of regions.
"""

from breezeway_daemon.db.runs import RequestMode, RunStatus
from breezeway_daemon.sync.batch import RegionPipeline, run_batch
from breezeway_daemon.sync.context import RunResult, SyncContext, SyncRequest
from breezeway_daemon.sync.run import EntitySync

__all__ = [
    "EntitySync",
    "RegionPipeline",
    "RequestMode",
    "RunResult",
    "RunStatus",
    "SyncContext",
    "SyncRequest",
    "run_batch",
]
