"""Keep the daemon's memory flat: large transient buffers stay out of glibc's heap.

(``fix_mmap_threshold``, called once at start; why, in its docstring).
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

M_MMAP_THRESHOLD = -3  # from <malloc.h>
MMAP_THRESHOLD = 128 * 1024  # glibc's default, below asyncio's 256 KiB read buffer


def fix_mmap_threshold() -> str:
    """Pin glibc's mmap threshold at 128 KiB for this process; returns what was done.

    Every socket read of asyncio's selector transport (asyncpg's connections, httpx's) allocates a
    256 KiB ``bytes`` and shrinks it in place to what arrived (CPython gh-85451). glibc serves
    blocks that large with ``mmap`` until a freed ``mmap``ed block raises its dynamic mmap
    threshold, and Python's own start-up does that (the interned-strings dict outgrows 128 KiB and
    then 256 KiB while modules are imported): from then on every read carves 256 KiB out of the brk
    heap. Small objects that outlive the read (the last chunk each idle asyncpg connection keeps,
    new prepared statements, responses waiting for the cycle collector) land in those regions, so
    the next 256 KiB read no longer fits and the heap grows: in the soak, free memory inside the
    heap grew ~150 KiB a batch while live heap memory stayed flat, and malloc_trim could give back
    pages but not shrink it.

    Setting ``M_MMAP_THRESHOLD`` back to glibc's default of 128 KiB also turns the dynamic
    adjustment off (mallopt(3)): a block that large which does not fit in free heap space is then
    mapped on its own and unmapped when freed, never extending the heap. With it the soak's heap
    growth fell from ~150 to ~27 KiB a batch. The price is a few microseconds of mmap/mremap/munmap
    per such read, nothing next to a round trip, and a page for each read kept a while (a
    connection's last chunk).

    An operator's own setting (``MALLOC_MMAP_THRESHOLD_`` or
    ``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=...``) is left alone; other C libraries (musl) are
    left alone.
    """
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return "not glibc: left alone"
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "glibc.malloc.mmap_threshold" in os.environ.get(
        "GLIBC_TUNABLES", ""
    ):
        return "set by the environment: left alone"
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return "mallopt unavailable: left alone"
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1:
        return "mallopt refused: left alone"
    return f"pinned at {MMAP_THRESHOLD} bytes"
