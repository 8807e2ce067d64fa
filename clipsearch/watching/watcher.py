"""`clipsearch watch` and `serve --watch`: a store that keeps itself current.

A catch-up run of `index` over the roots, then one small run per batch of changes
(changes.py), over just what changed: a file written or renamed is indexed alone, and a
folder where something went is looked at again, so that moves keep their vectors (the
re-run's own reuse) and deletions leave the catalog. Each run takes the store's writer
lock for each of its commits only (Store.sharing), the catch-up run too, so a `forget`,
`rebuild` or `index` by hand waits a moment rather than failing or waiting for the whole
run; the model, once loaded, stays loaded for the next batch.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from ..core.config import IndexOptions
from ..core.errors import ClipsearchError, explain
from ..images.items import absolute_roots
from ..indexing.report import IndexReport
from ..indexing.scan import Walker, is_under, wanted
from ..library import Library
from .changes import ChangeFeed


class NotAFolder(ClipsearchError):
    """watch follows folders; a file, a list or a shard is for `index`."""


@dataclass
class WatchState:
    """What the page's status line and `GET /api/v1/watch` tell of a watcher."""

    watching: bool = False
    indexing: bool = False
    polling: bool = False
    runs: int = 0
    changed: int = 0  # files added, updated, moved, copied or removed since it started
    last_change: float | None = None  # when a run last changed something (epoch seconds)

    def to_dict(self) -> dict:
        return asdict(self)


class Watcher:
    """Keeps `roots` current in the library's store. `on_report` hears every run's
    report (the catch-up first); `on_note` hears what the user should know once."""

    def __init__(
        self,
        library: Library,
        roots: Iterable[str],
        model: str | None = None,
        options: IndexOptions | None = None,
        poll: float | None = None,
        on_report: Callable[[IndexReport], None] = lambda report: None,
        on_note: Callable[[str], None] = lambda note: None,
    ):
        self.library = library
        self.roots = absolute_roots([str(r) for r in roots])
        for root in self.roots:
            if os.path.exists(root) and not os.path.isdir(root):
                raise NotAFolder(
                    f"{root} is a file: watch follows folders (index a file, a list or a "
                    "shard with `clipsearch index`)"
                )
        self.model = model
        self.options = options or IndexOptions()
        self.walker = Walker(self.options.include_hidden, exclude=self.options.exclude)
        self.poll = poll
        self.on_report = on_report
        self.on_note = on_note
        self.state = WatchState(polling=poll is not None)

    def run(self, stop: threading.Event) -> None:
        """Catch up, then follow the changes until `stop` is set."""
        self.state.watching = True
        try:
            self._index(self.roots)
            feed = ChangeFeed(self.roots, stop, self.poll, self._fell_back)
            for batch in feed:
                targets = self.targets(batch.paths) + batch.returned
                if targets and not stop.is_set():
                    self._index(absolute_roots(targets))
        finally:
            self.state.watching = False

    def run_noted(self, stop: threading.Event) -> None:
        """`run` on a thread of its own (beside a server): an error ends the watching with
        a note, not a traceback on a thread no one reads."""
        try:
            self.run(stop)
        except Exception as e:
            self.on_note(f"stopped watching: {explain(e) or f'{type(e).__name__}: {e}'}")

    def _fell_back(self, note: str) -> None:
        self.state.polling = True
        self.on_note(note)

    def _index(self, targets: list[str]) -> None:
        self.state.indexing = True
        try:
            report = self.library.index(targets, self.model, self.options, share_lock=True)
        except ClipsearchError as e:  # a full disk, say: said, and the next batch tries again
            self.on_note(str(e))
            return
        finally:
            self.state.indexing = False
        changed = report.added + report.updated + report.moved + report.copied + report.removed
        self.state.runs += 1
        if changed:
            self.state.changed += changed
            self.state.last_change = time.time()
        self.on_report(report)

    def targets(self, paths: Iterable[str]) -> list[str]:
        """What to index for changed paths: an image file alone, a new folder whole, and
        for a path that is gone, the nearest folder above it that is still there (if the
        catalog had anything under it). Nothing outside the roots, hidden or excluded."""
        out = []
        for path in paths:
            root = next((r for r in self.roots if is_under(path, [r])), None)
            if root is None or self._skipped(path, root):
                continue
            if os.path.isdir(path) or (os.path.isfile(path) and wanted(os.path.basename(path))):
                out.append(path)
            elif not os.path.lexists(path) and self.library.catalog.files.stamps_under([path]):
                out += self._still_there(path, root)
        return out

    def _skipped(self, path: str, root: str) -> bool:
        if is_under(path, [os.path.abspath(self.library.store.path)]):  # its own thumbnails
            return True
        if path == root:
            return False
        parts = os.path.relpath(path, root).split(os.sep)
        hidden = not self.walker.include_hidden and any(p.startswith(".") for p in parts)
        return hidden or (bool(self.walker.exclude) and self.walker.excluded(path, parts[-1]))

    @staticmethod
    def _still_there(path: str, root: str) -> list[str]:
        """The nearest folder above a path that is gone, within its root (none when the
        root itself is gone: an unplugged drive changes nothing)."""
        while path != root:
            path = os.path.dirname(path)
            if os.path.isdir(path):
                return [path]
        return []
