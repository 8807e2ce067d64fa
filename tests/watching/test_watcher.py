"""`clipsearch watch` on real folders, with the real watcher, a real catalog and a tiny
real model: files added, changed, moved and deleted are followed; a `forget`, `rebuild`
and `index` by hand go between the watcher's commits; SIGTERM stops it with exit 0 and
nothing left running."""

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
    """path -> (size, its vector's bytes), as the catalog holds them now (nothing before
    the first commit)."""
    if not (store / "catalog.db").exists():
        return {}
    db = sqlite3.connect(store / "catalog.db")
    try:
        if not db.execute("select 1 from sqlite_master where name = 'files'").fetchone():
            return {}  # being made
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

    def __init__(self, store: Path, roots: list[Path], caught_up: bool = True, **options):
        self.store = store
        self.library = Library(store, create=True, precision="fp32")
        self.reports, self.notes = [], []
        self.watcher = Watcher(
            self.library, [str(r) for r in roots], "random:tiny",
            IndexOptions(**{"workers": 1, "batch_size": 8, **options}),
            on_report=self.reports.append, on_note=self.notes.append,
        )  # fmt: skip
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.watcher.run, args=(self.stop,), daemon=True)
        self.thread.start()
        if caught_up:
            eventually(lambda: self.reports)
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


def by_hand(*args: str, store: Path) -> subprocess.CompletedProcess:
    """A clipsearch command as a user runs it beside the watcher (no fault of the test's)."""
    env = {k: v for k, v in os.environ.items() if k != VARIABLE}
    command = [sys.executable, "-m", "clipsearch", *args, "--store", str(store)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return done


def catalog_is_whole(store: Path) -> None:
    db = sqlite3.connect(store / "catalog.db")
    try:
        assert db.execute("pragma integrity_check").fetchone() == ("ok",)
        assert db.execute("pragma foreign_key_check").fetchall() == []
        vectors = db.execute("select file_id, count(*) from vectors group by file_id").fetchall()
        assert all(n == 1 for _, n in vectors)
    finally:
        db.close()


@pytest.fixture
def many_photos(tmp_path) -> Path:
    for i in range(12):
        make_image(tmp_path / "many" / f"p{i:02d}.png", seed=i)
    return tmp_path / "many"


def test_forget_rebuild_and_index_by_hand_go_between_the_commits_of_a_catch_up(
    tmp_path, many_photos, monkeypatch
):
    """A watcher's runs hold the writer lock only while committing: with its catch-up run
    held after its first commit (until the test says go), a `forget`, a `rebuild` and an
    `index` of the same folder by hand all finish; the watcher then finds its later
    batches done by hand and leaves them, and every file is catalogued once."""
    go = tmp_path / "go"
    monkeypatch.setenv(VARIABLE, f"batch-committed:batch 1.=wait:{go}")
    started = Watching(tmp_path / "store", [many_photos], caught_up=False, batch_size=4)
    try:
        eventually(lambda: len(catalog(started.store)) == 4)
        first = sorted(catalog(started.store))[0]
        assert "Forgot 1 files" in by_hand("forget", first, store=started.store).stdout
        by_hand("rebuild", store=started.store)
        by_hand("index", str(many_photos), "--model", "random:tiny", store=started.store)
        assert not started.reports and started.watcher.state.indexing  # still catching up
        go.touch()
        eventually(lambda: started.reports)
        assert len(catalog(started.store)) == 12
        assert all(vector is not None for _, vector in catalog(started.store).values())
        catalog_is_whole(started.store)
        make_image(many_photos / "after.png", seed=99)
        eventually(lambda: started.has(many_photos / "after.png"))
    finally:
        go.touch()
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
