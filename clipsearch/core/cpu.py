"""How many of the machine's cores are free at this moment.

For work short enough that a thread waiting for a busy core costs more than it brings: a
text query is ~500 small operations, and with two threads each waits at every one of them
for the other; on a busy machine that other has been descheduled (bench/busy_text.py:
p95 529 ms against 50 ms on one thread beside a CPU hog, 2 cores).
"""

from __future__ import annotations

import os
from pathlib import Path


def free_cores() -> int:
    """Cores not running another process's work now, at least 1: the kernel's count of
    runnable tasks less this process's own (its idle worker threads spin a while, and
    count). Elsewhere than Linux, every core."""
    cores = os.cpu_count() or 1
    try:
        runnable = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return cores
    return max(1, min(cores, cores - (runnable - _own_running())))


def _own_running() -> int:
    running = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            running += (task / "stat").read_text().rsplit(")", 1)[1].split()[0] == "R"
        except (OSError, IndexError):
            continue
    return max(1, running)
