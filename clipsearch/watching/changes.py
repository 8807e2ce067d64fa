"""What changes under the watched folders, in batches: the kernel's file-system events
(watchfiles, inotify under it) where it gives them, else a look every few seconds (the
watch limit reached, a network share without events, or --poll).

A burst (a thousand photos copied in) arrives as a few batches, not a thousand; a file
is handed on once its size and time have held still for SETTLE seconds, so a copy still
being written is not read half-done, and with the rest of its burst, so that the two
halves of a move (a name gone, a name new) are one batch and the move keeps its vector;
a root that disappears (an unplugged drive) is left alone, and watched again, and said
to be back, when it returns.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..core import faults

SETTLE = 1.0  # seconds a file must hold still before it is read
HOLD = 10.0  # longest a settled path waits for the rest of its burst
WAKE_MS = 400  # how often the feed wakes when nothing happens, to hand on settled files
STEP_MS = 50  # a quiet spell this long ends a burst's batch
DEBOUNCE_MS = 1600  # ... or this much time since its first event


@dataclass
class Batch:
    paths: set[str] = field(default_factory=set)  # changed and settled, or gone
    returned: list[str] = field(default_factory=list)  # roots that are back: catch them up


class ChangeFeed:
    """Batches of changes under `roots` until `stop` is set. `poll` (seconds) looks for
    changes that often instead of waiting for events; `on_note` hears, once, why the feed
    fell back to looking."""

    def __init__(
        self,
        roots: list[str],
        stop: threading.Event,
        poll: float | None = None,
        on_note: Callable[[str], None] = lambda note: None,
    ):
        self.roots = roots
        self.stop = stop
        self.poll = poll or 5.0
        self.polling = poll is not None
        self.on_note = on_note
        self.seen: dict[str, tuple[int, int] | None] = {}  # unsettled path -> last stamp
        self.ready: dict[str, float] = {}  # settled path -> when it was first seen
        self.first: dict[str, float] = {}  # unsettled path -> when it was first seen
        self.watched: list[str] | None = None

    def __iter__(self) -> Iterator[Batch]:
        while not self.stop.is_set():
            present = self._present()
            before = present if self.watched is None else self.watched  # None: the first look
            returned = [r for r in present if r not in before]
            self.watched = present
            if returned:
                yield Batch(returned=returned)
            if present:
                yield from self._watch(present)
            else:
                self.stop.wait(WAKE_MS / 1000)

    def _present(self) -> list[str]:
        return [r for r in self.roots if os.path.isdir(r)]

    def _watch(self, present: list[str]) -> Iterator[Batch]:
        """Until a root goes or comes back (then the caller watches the new set)."""
        import watchfiles

        try:
            faults.hit("watch-events", "polling" if self.polling else "events")
            for events in watchfiles.watch(
                *present,
                watch_filter=None,
                debounce=DEBOUNCE_MS,
                step=STEP_MS,
                stop_event=self.stop,
                rust_timeout=WAKE_MS,
                yield_on_timeout=True,
                force_polling=self.polling,
                poll_delay_ms=int(self.poll * 1000),
                ignore_permission_denied=True,
            ):
                now = time.time()
                for _, path in events:
                    self.seen[path] = None
                    self.first.setdefault(path, now)
                    self.ready.pop(path, None)  # it changed again
                settled = self._settled()
                if settled:
                    yield Batch(paths=settled)
                if self._present() != present:
                    return
        except OSError as e:
            if self.polling:
                raise
            self.polling = True
            self.on_note(
                f"no file-system events here ({e.strerror or e}): looking for changes every "
                f"{self.poll:g} s instead (--poll SECONDS sets how often)"
            )

    def _settled(self) -> set[str]:
        """The paths that are gone, or whose size and time held still since the last look
        and for SETTLE seconds: once every path of the burst is, or after HOLD seconds."""
        now = time.time()
        for path, before in list(self.seen.items()):
            try:
                st = os.stat(path)
            except OSError:  # gone: nothing to wait for
                st = None
            stamp = (st.st_size, st.st_mtime_ns) if st else None
            if st is None or (stamp == before and abs(now - st.st_mtime) >= SETTLE):
                self.ready[path] = self.first.pop(path)
                del self.seen[path]
            else:
                self.seen[path] = stamp
        waited = now - min(self.ready.values(), default=now)
        if not self.ready or (self.seen and waited < HOLD):
            return set()
        out, self.ready = set(self.ready), {}
        return out
