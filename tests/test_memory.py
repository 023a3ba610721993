"""The daemon's allocator setting keeps socket reads from growing glibc's heap.

Checked in fresh interpreters (the setting is process-wide), with the pattern the soak
showed: a large block freed (as Python's start-up does) raises glibc's dynamic mmap
threshold; then every read of 256 KiB (asyncio's read size) is shrunk to the few
hundred bytes that arrived, and some of those outlive the read. Without the setting the
heap grows read after read; with it, it does not.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from breezeway_daemon.memory import MMAP_THRESHOLD, fix_mmap_threshold

glibc_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="mallopt's M_MMAP_THRESHOLD is glibc's",
)

READS = """
import collections
import ctypes
import socket
import sys

from breezeway_daemon.memory import fix_mmap_threshold


class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2
big = bytearray(4 << 20)  # mapped, then freed: the dynamic threshold rises past 256 KiB
del big
outcome = fix_mmap_threshold() if sys.argv[1] == "fixed" else "not called"
ours, theirs = socket.socketpair()
heap_before = libc.mallinfo2().arena
recent, kept = collections.deque(maxlen=8), []
for n in range(5000):
    ours.send(b"x" * 300)
    data = theirs.recv(256 * 1024)  # what asyncio's selector transport does on each read
    recent.append(data)  # a connection keeps its last chunks for a while...
    if n % 50 == 0:
        kept.append(data)  # ...and a few stay much longer
    others = [bytes(1000) for _ in range(3)]
print(outcome, "|", (libc.mallinfo2().arena - heap_before) // 1024)
"""


def heap_growth_kib(mode: str) -> tuple[str, int]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")
    }
    out = subprocess.run(
        [sys.executable, "-c", READS, mode], env=env, capture_output=True, text=True, timeout=60,
        check=True,
    ).stdout  # fmt: skip
    outcome, growth = out.rsplit("|", 1)
    return outcome.strip(), int(growth)


@glibc_only
def test_socket_reads_do_not_grow_the_heap_once_the_threshold_is_pinned() -> None:
    outcome, unfixed = heap_growth_kib("unfixed")
    assert unfixed > 1024, "the pattern no longer grows the heap: this test proves nothing"
    outcome, fixed = heap_growth_kib("fixed")
    assert outcome == f"pinned at {MMAP_THRESHOLD} bytes"
    assert fixed < 64, (unfixed, fixed)


@glibc_only
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MALLOC_MMAP_THRESHOLD_", "262144"),
        ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=262144"),
    ],
)
def test_an_operators_own_threshold_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    assert fix_mmap_threshold() == "set by the environment: left alone"
