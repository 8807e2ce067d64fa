"""A local Ray instance that `index --ray` started ends with the run, even a killed one.

Ray ties its GCS and raylet to the driver (the kernel's parent-death signal), but the
raylet's own agents (DashboardAgent, RuntimeEnvAgent) learn of its death late and then
wait 60 s to report it to the GCS that died with it. So the driver starts this module as
a small process that holds the read end of a pipe: whichever way the driver ends, the pipe
closes, and every process left of the driver's Ray node is stopped. Linux only (it finds
them through /proc); elsewhere the agents linger as Ray lets them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

_started: list[subprocess.Popen] = []  # held for the driver's life: its pipe must stay open


def start(node_id: str) -> None:
    """Watch this driver; at its end, stop what is left of the Ray node `node_id`."""
    if not sys.platform.startswith("linux") or _started:
        return
    _started.append(
        subprocess.Popen(
            [sys.executable, "-m", __name__, node_id],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the run's process group is not for it
        )
    )


def left_of(node_id: str) -> list[int]:
    """This user's processes that belong to the Ray node (Ray gives each its node's id in
    its environment)."""
    mark = f"RAY_NODE_ID={node_id}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if mark in (proc / "environ").read_bytes().split(b"\0"):
                    found.append(int(proc.name))
            except OSError:  # another user's, or gone meanwhile
                continue
    return found


def _watch(node_id: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdin.buffer.read()  # returns when the driver's end closes: it has ended
    for pid in left_of(node_id):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue


if __name__ == "__main__":
    _watch(sys.argv[1])
