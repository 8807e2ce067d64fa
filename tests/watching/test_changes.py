"""The change feed on real folders and the kernel's real events: bursts in few batches,
a file taken once it is whole, a root that goes and comes back, and looking every few
seconds where there are no events."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from helpers import make_image

from clipsearch.core.faults import VARIABLE
from clipsearch.watching.changes import ChangeFeed

pytest.importorskip("watchfiles", reason="watch needs watchfiles (a dependency)")


class Feed:
    """A ChangeFeed read on a thread: its batches, as they come."""

    def __init__(self, roots: list[Path], **kwargs):
        self.stop = threading.Event()
        self.notes: list[str] = []
        roots = [str(r) for r in roots]
        self.feed = ChangeFeed(roots, self.stop, on_note=self.notes.append, **kwargs)
        self.batches: list = []
        self.thread = threading.Thread(target=lambda: self.batches.extend(self.feed), daemon=True)
        self.thread.start()
        time.sleep(0.5)  # its watch is set up

    def paths(self) -> set[str]:
        return {p for b in self.batches for p in b.paths}

    def covers(self, path: str) -> bool:
        """Whether a batch named the path, or a folder above it (not a root) that was new."""
        roots = set(self.feed.roots)
        return any(
            path == p or (p not in roots and path.startswith(p + os.sep)) for p in self.paths()
        )

    def wait_for(self, condition, seconds: float = 20) -> None:
        deadline = time.time() + seconds
        while not condition() and time.time() < deadline:
            time.sleep(0.1)
        assert condition(), f"batches: {self.batches}, notes: {self.notes}"

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def feed_of():
    feeds = []

    def start(roots, **kwargs) -> Feed:
        feeds.append(Feed(roots, **kwargs))
        return feeds[-1]

    yield start
    for feed in feeds:
        feed.close()


def test_a_burst_of_files_comes_in_a_few_batches(tmp_path, feed_of):
    """Every copied file comes, itself or with its new folder: files made in a new folder
    before the kernel watches it send no event of their own (the watcher indexes a new
    folder whole)."""
    source, root = tmp_path / "source", tmp_path / "photos"
    for i in range(300):
        make_image(source / f"img{i:03d}.png", seed=i, size=(24, 20))
    root.mkdir()
    feed = feed_of([root])
    make_image(root / "probe.png")  # once it is handed on, the watch is surely set up
    feed.wait_for(lambda: str(root / "probe.png") in feed.paths())
    before = len(feed.batches)
    shutil.copytree(source, root / "copied")
    expected = {str(root / "copied" / f"img{i:03d}.png") for i in range(300)}
    feed.wait_for(lambda: all(feed.covers(path) for path in expected))
    assert len(feed.batches) - before <= 5


def test_a_file_still_being_written_is_handed_on_once_whole(tmp_path, feed_of):
    root = tmp_path / "photos"
    root.mkdir()
    whole = make_image(tmp_path / "whole.png", size=(300, 200)).read_bytes()
    feed = feed_of([root])
    with open(root / "slow.png", "wb") as f:  # a slow copy: a chunk every 0.4 s for 2 s
        for start in range(0, len(whole), len(whole) // 5 + 1):
            f.write(whole[start : start + len(whole) // 5 + 1])
            f.flush()
            time.sleep(0.4)
            assert feed.paths() == set(), "handed on while it was still being written"
    feed.wait_for(lambda: str(root / "slow.png") in feed.paths())


def test_a_root_that_goes_is_watched_again_when_it_returns(tmp_path, feed_of):
    root, away = tmp_path / "drive", tmp_path / "unplugged"
    make_image(root / "a.png")
    feed = feed_of([root])
    root.rename(away)
    feed.wait_for(lambda: str(root) in feed.paths())  # the root itself is gone
    away.rename(root)
    feed.wait_for(lambda: any(b.returned == [str(root)] for b in feed.batches))
    make_image(root / "new.png", seed=3)
    feed.wait_for(lambda: str(root / "new.png") in feed.paths())


def test_without_events_it_looks_every_few_seconds_and_says_so_once(tmp_path, feed_of, monkeypatch):
    """As when the kernel's watch limit is reached (watchfiles raises ENOSPC there)."""
    monkeypatch.setenv(VARIABLE, "watch-events:events=full")
    root = tmp_path / "photos"
    root.mkdir()
    feed = feed_of([root])
    make_image(root / "a.png")
    feed.wait_for(lambda: str(root / "a.png") in feed.paths())
    make_image(root / "b.png", seed=1)
    feed.wait_for(lambda: str(root / "b.png") in feed.paths())
    assert len(feed.notes) == 1 and "looking for changes every 5 s" in feed.notes[0]


def test_poll_looks_every_so_often_from_the_start(tmp_path, feed_of):
    root = tmp_path / "share"
    root.mkdir()
    feed = feed_of([root], poll=1.0)
    make_image(root / "a.png")
    feed.wait_for(lambda: str(root / "a.png") in feed.paths())
    assert feed.notes == [] and feed.feed.polling
    os.unlink(root / "a.png")
    feed.wait_for(lambda: sum(str(root / "a.png") in b.paths for b in feed.batches) == 2)
