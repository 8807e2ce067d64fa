"""Indexing that yields to interactive work on the same machine.

Photo libraries are indexed while people search them. Left alone, `clipsearch index` and
a search each run an OpenMP team on every core, and OpenMP's threads spin while they wait
for each other, so the two processes burn each other's time slices, and a query waits many
times its own length. In the background the indexer instead runs at a
lower CPU priority (nice 10) and I/O priority (idle class), its OpenMP threads sleep
instead of spinning when they wait, and `--threads` can cap it. Its decoding workers
inherit all of it. The process's own throughput barely changes when nothing else runs
(bench/index_contention.py measures both).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform

NICE = 10
IOPRIO_SET = {"x86_64": 251, "aarch64": 30}  # the syscall's number, by architecture
IOPRIO_CLASS_IDLE = 3
IOPRIO_WHO_PROCESS = 1


def run_in_background(threads: int | None = None) -> None:
    """Lower this process's priorities and stop its OpenMP threads spinning. Must run
    before torch (and with it OpenMP) is imported: the wait policy is read at start."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(threads)
    with contextlib.suppress(OSError, AttributeError):
        current = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, 0, max(current, NICE))
    _idle_io()


def _idle_io() -> None:
    """I/O only when no other process wants the disk (Linux; elsewhere nothing)."""
    number = IOPRIO_SET.get(platform.machine())
    if number is None or platform.system() != "Linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall(number, IOPRIO_WHO_PROCESS, 0, IOPRIO_CLASS_IDLE << 13)
