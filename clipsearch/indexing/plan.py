"""What an indexing run must do: walk the roots (folders, tar shards, list files), compare
what is there with the catalog, and list the files to embed.

Unchanged files are known from a stat; a tar shard read whole and unchanged since is
known from the catalog without opening it; a list file's URLs are not fetched again
unless they failed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from ..core.config import IndexOptions
from ..core.errors import ClipsearchError
from ..images.formats import heif_support, raw_support, skipped_for_heif, skipped_for_raw
from ..images.items import (
    is_list_name,
    is_shard_name,
    is_url,
    source_stat,
    split_member,
)
from ..images.records import DataError, list_items
from ..images.shards import shard_items
from ..storage.catalog import Catalog
from ..storage.schema import File
from .scan import Found, ScanProblem, ScanResult, Walker, collector_paused, compare, is_under


@dataclass
class Task:
    """One file to embed, and the row it replaces or completes."""

    found: Found
    replaces: File | None = None  # changed file: old row goes in the same transaction
    existing: File | None = None  # unchanged file that lacks this model's vector

    @property
    def is_new(self) -> bool:
        """A file the catalog has no row for at this path."""
        return self.replaces is None and self.existing is None

    @property
    def item(self) -> tuple[str, tuple[int, int]]:
        """What decoding takes: the key, and the (size, mtime_ns) the scan saw."""
        return self.found.path, (self.found.size, self.found.mtime_ns)


OUTSIDE_LIST = (
    "is outside the list's folder, so not read (a list from elsewhere must not reach your "
    "files); move the list beside its files, or pass --trust-lists"
)


class Planner:
    """Scans roots against the catalog and plans one model's work. What it met on the
    way is kept: `problems` (unreadable folders, bad roots and sources), `shards_read`
    (to mark complete once their members are committed), `unchanged` (files left alone),
    `awaiting` (failures that an extra, once installed, would retry), and `walked` (what
    the walk found, where it met no list file or tar shard: settled.py)."""

    def __init__(self, catalog: Catalog, options: IndexOptions, skip: Sequence[str] = ()):
        """skip: folders never walked into (the store's own: its thumbnails are no photos)."""
        self.catalog = catalog
        self.walker = Walker.of(options, skip)
        self.problems: list[ScanProblem] = self.walker.problems
        self.trust_lists = options.trust_lists
        self.real_folders: dict[str, str] = {}  # a list item's folder -> its real path
        self.shards_read: list[tuple[str, int, int]] = []  # (path, size, mtime_ns)
        self.unchanged = 0
        self.awaiting = 0
        self.walked: list[Found] | None = None

    @collector_paused()
    def scan(self, roots: list[str], known: bool = True) -> ScanResult:
        """What is under the roots, compared with the catalog's rows (with known=False,
        for a store that has no catalog yet, everything is new)."""
        walked_roots, walked, listed = self._walk(roots)
        found = {f.path: f for f in walked + listed}
        shards = [f for f in found.values() if is_shard_name(f.path)]
        self.walked = None if listed or shards else walked
        rows = self._rows(walked_roots, listed, shards) if known else {}
        complete = self.catalog.files.shards_complete([f.path for f in shards]) if known else {}
        by_shard: dict[str, list[File]] = {}
        for path, row in rows.items() if shards else ():
            if (member := split_member(path)) is not None:
                by_shard.setdefault(member[0], []).append(row)
        for shard in shards:
            del found[shard.path]
            members = self._members(shard, by_shard.get(shard.path, []), complete)
            found.update((f.path, f) for f in members)
        return compare(list(found.values()), rows, self.walker.unread)

    def _walk(self, roots: list[str]) -> tuple[list[str], list[Found], list[Found]]:
        """(the roots walked, the files found there, the items of the list files)."""
        walked_roots, walked, listed = [], [], []
        for root in roots:
            if not os.path.lexists(root):
                self.problems.append(
                    ScanProblem(root, "does not exist; nothing under it was changed")
                )
            elif is_list_name(root) and os.path.isfile(root):
                listed += self._listed(root)
            else:
                walked_roots.append(root)
                walked += self.walker.walk(root)
        return walked_roots, walked, listed

    def _rows(self, walked_roots: list[str], listed: list[Found], shards: list[Found]) -> dict:
        """The catalog's rows for what the roots hold: under the roots walked, the items
        listed, and the members of the shards that lists name."""
        rows = self.catalog.files.stamps_under(walked_roots)
        rows.update(self.catalog.files.named([f.path for f in listed]))
        named = {f.path for f in listed}
        rows.update(self.catalog.files.under([f.path for f in shards if f.path in named]))
        return rows

    def _members(self, shard: Found, rows: list[File], complete: dict) -> list[Found]:
        """A shard's images, each with the shard's size and mtime. A shard read whole and
        unchanged since has them in the catalog, and is not opened; an unreadable one
        keeps what it had."""
        known = [Found(r.path, r.size, r.mtime_ns) for r in rows]
        if complete.get(shard.path) == (shard.size, shard.mtime_ns):
            return known
        try:
            items = shard_items(shard.path)
        except DataError as e:
            self.problems.append(ScanProblem(shard.path, f"{e}; its items were left as they were"))
            return known
        self.shards_read.append((shard.path, shard.size, shard.mtime_ns))
        return [Found(i.key, shard.size, shard.mtime_ns, i.meta) for i in items]

    def _listed(self, path: str) -> list[Found]:
        """A list file's items: files with their size and mtime (a missing one is recorded
        as failed when decoded), URLs with none: a URL in the catalog is not fetched
        again, unless it failed (`tasks`)."""
        try:
            items = list_items(path)
        except ClipsearchError as e:
            self.problems.append(ScanProblem(path, str(e)))
            return []
        out = []
        folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
        for item in items:
            if not self._may_read(item.key, folder):
                self.problems.append(ScanProblem(item.key, OUTSIDE_LIST))
                continue
            try:
                size, mtime_ns = source_stat(item.key) or (0, 0)
            except OSError:
                size, mtime_ns = 0, 0
            out.append(Found(item.key, size, mtime_ns, item.meta))
        return out

    def _may_read(self, key: str, folder: str) -> bool:
        """Whether a list may name this item: a URL, or a file (or shard) in the list's
        folder or below, links resolved; anything with --trust-lists."""
        if self.trust_lists or is_url(key):
            return True
        member = split_member(key)
        path = member[0] if member else key
        if os.path.islink(path):
            return is_under(os.path.realpath(path), [folder])
        parent = os.path.dirname(path)  # a list of a million items has few folders
        if parent not in self.real_folders:
            self.real_folders[parent] = os.path.realpath(parent)
        return is_under(os.path.join(self.real_folders[parent], os.path.basename(path)), [folder])

    @collector_paused()
    def tasks(self, scan: ScanResult, model_id: int | None) -> list[Task]:
        """Files to embed: new, changed, and unchanged ones without this model's vector.
        Unchanged failures wait until the file changes, except HEIF and RAW files skipped
        for lack of pillow-heif or rawpy, retried once it is installed, and URLs, which
        cannot say they changed."""
        have = self.catalog.vectors.present(model_id, [f.id for f in scan.unchanged])
        tasks = [Task(f) for f in scan.new] + [Task(f, replaces=row) for f, row in scan.changed]
        for row in scan.unchanged:
            if row.state == "ok" and row.id not in have:
                tasks.append(Task(Found(row.path, row.size, row.mtime_ns), existing=row))
            elif row.state == "failed" and (
                (skipped_for_heif(row.error) and heif_support())
                or (skipped_for_raw(row.error) and raw_support())
                or is_url(row.path)
            ):  # a URL cannot say it changed: a failed one (404, timeout) is tried again
                tasks.append(Task(Found(row.path, row.size, row.mtime_ns), replaces=row))
            else:
                self.unchanged += 1
                self.awaiting += row.state == "failed" and (
                    skipped_for_heif(row.error) or skipped_for_raw(row.error)
                )
        return tasks
