"""Walking folders and comparing what is there with the catalog. Tar shards are found as
files; the plan opens those that changed (plan.py, images/shards.py).

Unchanged files (same size and mtime_ns) are recognised from a stat alone, never read.
Which new files are moves or copies is reuse.py's question.
"""

from __future__ import annotations

import fnmatch
import gc
import operator
import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..core import faults
from ..core.config import IndexOptions
from ..images.formats import ALL_EXTENSIONS, companions, is_raw_name

if TYPE_CHECKING:  # SQLAlchemy: not imported by a re-run that finds nothing to do (settled.py)
    from ..storage.schema import File


@dataclass(slots=True)  # not frozen: a walk makes one per file, and frozen ones cost 4x
class Found:
    path: str  # or a shard member's or URL's key (images/items.py)
    size: int
    mtime_ns: int
    meta: dict | None = field(default=None, compare=False)  # what a shard or list says of it


@dataclass
class ScanProblem:
    path: str
    reason: str


@dataclass
class ScanResult:
    """What a walk found, compared with the catalog."""

    new: list[Found] = field(default_factory=list)
    changed: list[tuple[Found, File]] = field(default_factory=list)
    unchanged: list[File] = field(default_factory=list)
    missing: list[File] = field(default_factory=list)
    problems: list[ScanProblem] = field(default_factory=list)  # unreadable dirs, loops, bad roots


@dataclass
class Walker:
    include_hidden: bool = False
    follow_symlinks: bool = False
    exclude: Sequence[str] = ()
    problems: list[ScanProblem] = field(default_factory=list)
    visited: set = field(default_factory=set)  # (device, inode) of every folder walked
    skip: Sequence[str] = ()  # folders never walked into (the store's own, inside a root)
    unread: list[str] = field(default_factory=list)  # folders and entries it could not read

    @classmethod
    def of(cls, options: IndexOptions, skip: Sequence[str] = ()) -> Walker:
        """The walk an indexing run with these options makes."""
        return cls(
            include_hidden=options.include_hidden,
            follow_symlinks=options.follow_symlinks,
            exclude=options.exclude,
            skip=skip,
        )

    def excluded(self, path: str, name: str) -> bool:
        return any(fnmatch.fnmatch(name, g) or fnmatch.fnmatch(path, g) for g in self.exclude)

    def walk(self, root: str) -> list[Found]:
        """Image files under root (or root itself), depth first. Each folder is walked
        once, however many links lead to it: links that loop are reported, and links that
        meet again (a diamond) cannot multiply the paths."""
        try:
            st = os.stat(root) if self.follow_symlinks else os.lstat(root)
        except OSError as e:
            self.problems.append(ScanProblem(root, f"cannot read: {e.strerror}"))
            self.unread.append(root)
            return []
        if stat.S_ISLNK(st.st_mode):
            if not os.path.isdir(root):
                self.problems.append(
                    ScanProblem(root, "is a symbolic link; pass --follow-symlinks to index it")
                )
                return []
            st = os.stat(root)  # a link named as a root folder is where the user points
        if stat.S_ISREG(st.st_mode):
            return [] if self._paired(root) else [Found(root, st.st_size, st.st_mtime_ns)]
        key = (st.st_dev, st.st_ino)
        if key in self.visited:  # `index A L` with L -> A, or `index A A/sub`
            self.problems.append(ScanProblem(root, "is a folder already given; indexed once"))
            return []
        self.visited.add(key)
        found: list[Found] = []
        self._walk_dir(root, {key}, found)
        return found

    @staticmethod
    def _paired(path: str) -> bool:
        """A RAW named alone (by `watch`, or by hand) with its JPEG beside it: that JPEG
        is the photo."""
        if not is_raw_name(path):
            return False
        folder, name = os.path.split(path)
        try:
            return name in companions(os.listdir(folder or "."))
        except OSError:
            return False

    def _walk_dir(self, folder: str, ancestors: set, found: list[Found]) -> None:
        """The images under folder, appended to found (a list, not a generator: each
        level of generators would pass every path up once more)."""
        try:
            faults.hit("list-folder", folder)
            entries = sorted(os.scandir(folder), key=BY_NAME)
        except OSError as e:
            self.problems.append(
                ScanProblem(folder, f"cannot list folder: {e.strerror}; what was indexed under "
                            "it is kept")
            )  # fmt: skip
            self.unread.append(folder)
            return
        paired = companions([e.name for e in entries])  # RAW+JPEG: indexed by the JPEG
        hide, exclude, follow = not self.include_hidden, self.exclude, self.follow_symlinks
        add = found.append
        for entry in entries:  # each step here is paid 100k times by a re-run of 100k files
            name = entry.name
            if (
                (hide and name[0] == ".")
                or (paired and name in paired)
                or (exclude and self.excluded(entry.path, name))
            ):
                continue
            try:
                link = entry.is_symlink()
                if link and not follow:
                    continue
                dot = name.rfind(".")  # as wanted(name), without its call for most photos
                lower = dot > 0 and name[0] != "." and name[dot:] in WANTED_EXTENSIONS
                image = lower or wanted(name)
                if not (image or link or entry.is_dir(follow_symlinks=False)):
                    continue  # a file no image: no stat for it (the folder listing says so)
                st = entry.stat(follow_symlinks=True)
            except OSError as e:  # dangling link, permission, vanished
                if entry.is_symlink():
                    continue
                self.problems.append(ScanProblem(entry.path, f"cannot stat: {e.strerror}"))
                self.unread.append(entry.path)
                continue
            if image and S_ISREG(st.st_mode):
                add(Found(entry.path, st.st_size, st.st_mtime_ns))
            elif S_ISDIR(st.st_mode):
                self._enter(entry.path, (st.st_dev, st.st_ino), ancestors, found)

    def _enter(self, folder: str, key: tuple[int, int], ancestors: set, found: list) -> None:
        """A folder met in a walk, walked unless the store's own, a loop or seen before."""
        if folder in self.skip:
            return
        if key in ancestors:
            self.problems.append(ScanProblem(folder, "symlink loop, not followed"))
        elif key not in self.visited:
            self.visited.add(key)
            self._walk_dir(folder, ancestors | {key}, found)


S_ISDIR, S_ISREG = stat.S_ISDIR, stat.S_ISREG
BY_NAME = operator.attrgetter("name")


WANTED_EXTENSIONS = ALL_EXTENSIONS | {".tar"}


def wanted(name: str) -> bool:
    """An image or a tar shard, by its name (as is_image_name and is_shard_name say, in
    one look: every name walked is asked)."""
    dot = name.rfind(".")
    if dot <= 0 or (name[0] == "." and not name[:dot].strip(".")):
        return False  # no extension, or only leading dots (".jpg" is a name, as splitext says)
    return name[dot:].lower() in WANTED_EXTENSIONS


def compare(
    found: Sequence[Found], known: dict[str, File], unread: Sequence[str] = ()
) -> ScanResult:
    """Sort found files against catalog rows under the same roots. A row under a folder
    or entry that could not be read (`unread`) is not missing: it may well be there."""
    result = ScanResult()
    seen = set()
    for f in found:
        seen.add(f.path)
        row = known.get(f.path)
        if row is None:
            result.new.append(f)
        elif row.size == f.size and row.mtime_ns == f.mtime_ns and not worth_retrying(row):
            result.unchanged.append(row)
        else:
            result.changed.append((f, row))
    result.missing = [
        row for path, row in known.items() if path not in seen and not is_under(path, unread)
    ]
    return result


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cycle collector held off for a scan. A scan makes a few objects per file,
    none in a cycle, that live until it ends; every so often they set off a full
    collection, which walks every object in the process: collections took 75 ms of a
    310 ms unchanged re-run of 10,000 files, more with torch loaded (BENCHMARKS.md,
    Unchanged re-runs)."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def worth_retrying(row: File) -> bool:
    """A file that failed for want of permission: `chmod` mends that without touching its
    size or modification time, so it is tried again on every run until it reads."""
    return row.state == "failed" and (row.error or "").startswith("permission denied")


def is_under(path: str, places: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip(os.sep) + os.sep) for p in places)
