"""A local Ray instance that `index --ray` started ends with the run, even a killed one.

Ray ties its GCS and raylet to the driver (the kernel's parent-death signal), but the
raylet's own agents (DashboardAgent, RuntimeEnvAgent) learn of its death late and then
wait 60 s to report it to the GCS that died with it. So the driver starts this module as
a small process that holds the read end of a pipe: whichever way the driver ends, the pipe
closes, and every Python process that still holds a file of the instance's session folder
(its logs, its sockets) is stopped: Ray retitles its processes over their command lines and
environments, but not their open files. Linux only (it looks through /proc); elsewhere the
agents linger as Ray lets them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

_started: list[subprocess.Popen] = []  # held for the driver's life: its pipe must stay open


def start(session: str) -> None:
    """Watch this driver; at its end, stop what is left of the Ray instance whose session
    folder is `session`."""
    if not sys.platform.startswith("linux") or _started:
        return
    _started.append(
        subprocess.Popen(
            [sys.executable, "-m", __name__, session],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the run's process group is not for it
        )
    )


def holding(folder: str) -> list[int]:
    """This user's processes with a file open under `folder`."""
    inside = folder.rstrip(os.sep) + os.sep
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if any(os.readlink(fd).startswith(inside) for fd in (proc / "fd").iterdir()):
                    found.append(int(proc.name))
            except OSError:  # another user's, or gone meanwhile
                continue
    return found


def _watch(session: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdin.buffer.read()  # returns when the driver's end closes: it has ended
    python = os.path.realpath(sys.executable)  # Ray's agents and workers; not a `tail -f`
    for pid in holding(session):
        try:
            if os.path.realpath(f"/proc/{pid}/exe") == python:
                os.kill(pid, signal.SIGKILL)
        except OSError:
            continue


if __name__ == "__main__":
    _watch(sys.argv[1])
