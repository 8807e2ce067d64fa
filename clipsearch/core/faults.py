"""Fault-injection points for the test suite.

Where a crash or a race must leave everything whole, the tests make it happen at exactly
that point every time instead of hoping a timer lands there. Inert unless the environment
variable CLIPSEARCH_FAULT names the point: `point=action` or `point:text=action`, where
`text` must occur in the detail the code passes (a file name, say) and action is `kill`
(SIGKILL this process), `exit` (leave at once with status 70, as a crash would),
`raise` (a RuntimeError, as a bug would), `deny` (a PermissionError, as a folder that
cannot be read gives even root), `full` (an OSError ENOSPC, as a full disk or the
inotify watch limit gives), `sleep:SECONDS` or `wait:PATH` (until PATH exists, a minute
at most: a test does its part meanwhile). Several specs are separated by `;`.
"""

from __future__ import annotations

import errno
import os
import signal
import time

VARIABLE = "CLIPSEARCH_FAULT"


def hit(point: str, detail: str = "") -> None:
    specs = os.environ.get(VARIABLE)
    if not specs:
        return
    for spec in specs.split(";"):
        where, _, action = spec.partition("=")
        name, _, text = where.partition(":")
        if name == point and text in detail:
            _act(action)


def _act(action: str) -> None:
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "exit":
        os._exit(70)
    elif action == "deny":
        raise PermissionError(13, "Permission denied")
    elif action == "raise":
        raise RuntimeError("fault injected by CLIPSEARCH_FAULT")
    elif action == "full":
        raise OSError(errno.ENOSPC, "No space left on device")
    elif action.startswith("sleep:"):
        time.sleep(float(action[len("sleep:") :]))
    elif action.startswith("wait:"):
        deadline = time.monotonic() + 60
        while not os.path.exists(action[len("wait:") :]) and time.monotonic() < deadline:
            time.sleep(0.05)
