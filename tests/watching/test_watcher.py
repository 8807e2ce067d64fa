"""`clipsearch watch` on real folders, with the real watcher, a real catalog and a tiny
real model: files added, changed, moved and deleted are followed; a manual `forget`
shares the store; SIGTERM stops it with exit 0 and nothing left running."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from helpers import make_image, wait_until_gone

from clipsearch import Library
from clipsearch.core.faults import VARIABLE
from clipsearch.indexing.indexer import IndexOptions
from clipsearch.watching.watcher import Watcher

pytest.importorskip("watchfiles", reason="watch needs watchfiles (a dependency)")


def catalog(store: Path) -> dict[str, tuple[int, bytes | None]]:
    """path -> (size, its vector's bytes), as the catalog holds them now."""
    db = sqlite3.connect(store / "catalog.db")
    try:
        rows = db.execute(
            "select f.path, f.size, v.vector from files f left join vectors v on v.file_id = f.id"
        ).fetchall()
    finally:
        db.close()
    return {path: (size, vector) for path, size, vector in rows}


def eventually(condition, seconds: float = 30) -> None:
    deadline = time.time() + seconds
    while not condition() and time.time() < deadline:
        time.sleep(0.2)
    assert condition()


class Watching:
    """A Watcher on its own thread, as `serve --watch` runs one."""

    def __init__(self, store: Path, roots: list[Path], **options):
        self.store = store
        self.library = Library(store, create=True, precision="fp32")
        self.reports, self.notes = [], []
        self.watcher = Watcher(
            self.library, [str(r) for r in roots], "random:tiny",
            IndexOptions(workers=1, batch_size=8, **options),
            on_report=self.reports.append, on_note=self.notes.append,
        )  # fmt: skip
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.watcher.run, args=(self.stop,), daemon=True)
        self.thread.start()
        eventually(lambda: self.reports)  # caught up
        time.sleep(0.5)  # and watching

    def has(self, path: Path) -> bool:
        return catalog(self.store).get(str(path), (0, None))[1] is not None

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        self.library.close()
        assert not self.thread.is_alive()


@pytest.fixture
def photos(tmp_path) -> Path:
    for i in range(3):
        make_image(tmp_path / "photos" / f"img{i}.png", seed=i)
    return tmp_path / "photos"


@pytest.fixture
def watching(tmp_path, photos):
    started = Watching(tmp_path / "store", [photos])
    yield started
    started.close()


def test_added_changed_moved_and_deleted_files_are_followed(watching, photos):
    assert all(watching.has(photos / f"img{i}.png") for i in range(3))  # the catch-up run
    make_image(photos / "new" / "deeper" / "added.png", seed=10)  # in new sub-folders
    eventually(lambda: watching.has(photos / "new" / "deeper" / "added.png"))
    size_before = catalog(watching.store)[str(photos / "img0.png")][0]
    make_image(photos / "img0.png", seed=11, size=(64, 50))
    eventually(lambda: catalog(watching.store)[str(photos / "img0.png")][0] != size_before)
    vector = catalog(watching.store)[str(photos / "img1.png")][1]
    (photos / "img1.png").rename(photos / "new" / "moved.png")
    eventually(lambda: watching.has(photos / "new" / "moved.png"))
    assert str(photos / "img1.png") not in catalog(watching.store)
    assert catalog(watching.store)[str(photos / "new" / "moved.png")][1] == vector
    assert any(r.moved == 1 for r in watching.reports)
    (photos / "img2.png").unlink()
    eventually(lambda: str(photos / "img2.png") not in catalog(watching.store))
    assert watching.watcher.state.changed == 3 + 4  # caught up; added, updated, moved, removed
    assert watching.library.loads == [("random:tiny", "fp32", False)]  # loaded once, kept


def test_hidden_and_excluded_changes_are_left_alone(tmp_path, photos):
    started = Watching(tmp_path / "store", [photos], exclude=["*.tmp.png"])
    try:
        make_image(photos / ".thumbs" / "t.png")
        make_image(photos / "x.tmp.png")
        make_image(photos / "seen.png", seed=5)
        eventually(lambda: started.has(photos / "seen.png"))
        assert {Path(p).name for p in catalog(started.store)} == {
            "img0.png", "img1.png", "img2.png", "seen.png"
        }  # fmt: skip
    finally:
        started.close()


def test_a_root_that_vanishes_changes_nothing_and_is_caught_up_when_back(tmp_path, photos):
    started = Watching(tmp_path / "store", [photos])
    try:
        before = catalog(started.store)
        photos.rename(tmp_path / "unplugged")
        time.sleep(3)
        assert catalog(started.store) == before
        make_image(tmp_path / "unplugged" / "while-away.png", seed=7)
        (tmp_path / "unplugged").rename(photos)
        eventually(lambda: started.has(photos / "while-away.png"))
        assert before.keys() < catalog(started.store).keys()
    finally:
        started.close()


def test_a_manual_forget_waits_for_a_run_of_the_watcher_and_both_go_on(
    tmp_path, photos, monkeypatch
):
    """The watcher's runs hold the writer lock for their own length only: a `forget` by
    hand in the middle of one waits for it, then the watcher goes on."""
    started = Watching(tmp_path / "store", [photos])
    try:
        monkeypatch.setenv(VARIABLE, "batch-committed=sleep:3")  # a run that lasts
        make_image(photos / "slow.png", seed=8)
        eventually(lambda: started.watcher.state.indexing, seconds=20)
        forget = [sys.executable, "-m", "clipsearch", "forget", str(photos / "img0.png")]
        done = subprocess.run(
            [*forget, "--store", str(started.store)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert "waiting" in done.stderr.lower()
        monkeypatch.delenv(VARIABLE)
        eventually(lambda: started.has(photos / "slow.png"))
        assert str(photos / "img0.png") not in catalog(started.store)
        make_image(photos / "after.png", seed=9)
        eventually(lambda: started.has(photos / "after.png"))
    finally:
        started.close()


def test_sigterm_stops_watch_with_exit_0_and_nothing_left_running(tmp_path, photos):
    marker = f"CLIPSEARCH_TEST_RUN={uuid.uuid4().hex}"
    command = [sys.executable, "-m", "clipsearch", "watch", str(photos), "--json"]
    command += ["--store", str(tmp_path / "store"), "-m", "random:tiny", "--workers", "1"]
    key, value = marker.split("=")
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, key: value},
    )  # fmt: skip
    try:
        caught_up = json.loads(proc.stdout.readline())
        assert caught_up["added"] == 3
        time.sleep(0.5)
        make_image(photos / "new.png", seed=4)
        assert json.loads(proc.stdout.readline())["added"] == 1  # one line per run
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.stderr.read()
    finally:
        proc.kill()
    assert wait_until_gone(marker) == []


def test_a_file_given_to_watch_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from clipsearch.cli import app

    photo = make_image(tmp_path / "a.png")
    done = CliRunner().invoke(app, ["watch", str(photo), "--store", str(tmp_path / "s")])
    assert done.exit_code == 1
    assert "watch follows folders" in done.output and "Traceback" not in done.output
