"""The store folder: one writer at a time, readers never wait, private files, odd names."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import pytest
from helpers import make_image
from typer.testing import CliRunner

from clipsearch.cli import app
from clipsearch.library import Library
from clipsearch.storage.store import LOCK_FILE, Store, StoreBusy

MODEL = "random:tiny"

HOLD_THE_LOCK = """
import sys, time
from clipsearch.storage.store import Store
with Store(sys.argv[1]).writing():
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_lock(store, seconds: float) -> subprocess.Popen:
    """Another process holding the store's writer lock for a while."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, str(store), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "holding"
    return proc


@pytest.fixture
def indexed(tmp_path):
    for i in range(4):
        make_image(tmp_path / "photos" / f"{i}.png", seed=i)
    with Library(tmp_path / "store", create=True) as lib:
        lib.index([tmp_path / "photos"], model=MODEL)
    return tmp_path / "photos", tmp_path / "store"


def test_a_second_writer_waits_and_says_so(indexed):
    photos, store = indexed
    holder = hold_lock(store, 2)
    waited = []
    started = time.monotonic()
    with Library(store, on_wait=waited.append) as lib:
        assert lib.forget([photos / "0.png"]) == 1
    assert waited == [str(holder.pid)] and time.monotonic() - started > 1
    holder.wait()


def test_no_wait_refuses_with_one_line_and_readers_never_wait(indexed):
    photos, store = indexed
    holder = hold_lock(store, 30)
    try:
        with Library(store, wait=False) as lib, pytest.raises(StoreBusy, match="--wait"):
            lib.forget([photos / "0.png"])
        result = CliRunner().invoke(
            app, ["forget", str(photos / "0.png"), "--store", str(store), "--no-wait"]
        )
        assert result.exit_code == 1
        assert f"another clipsearch process (pid {holder.pid}) is writing" in result.stderr
        started = time.monotonic()
        with Library(store) as lib:  # a query does not take the lock
            assert len(lib.search("a red square", k=2).results) == 2
            assert lib.status().files_ok == 4
        assert time.monotonic() - started < 20
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_writers_lock_goes_with_it(indexed):
    """The lock is an flock the system releases with its holder: the lock file stays (it
    only says who wrote last), the lock does not."""
    _, store = indexed
    holder = hold_lock(store, 60)
    with pytest.raises(StoreBusy), Store(store, wait=False).writing():
        pass
    holder.kill()
    holder.wait()
    with Store(store, wait=False).writing():
        assert (store / LOCK_FILE).read_text() == str(os.getpid())


def test_two_index_runs_at_once_both_finish_and_index_each_file_once(tmp_path):
    for i in range(40):
        make_image(tmp_path / "photos" / f"{i:02d}.png", seed=i)
    args = ["index", str(tmp_path / "photos"), "--store", str(tmp_path / "store")]
    args += ["--model", MODEL, "--workers", "1", "--batch-size", "4"]
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "clipsearch", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert not any("Traceback" in err for _, err in outputs)
    db = sqlite3.connect(tmp_path / "store" / "catalog.db")
    assert db.execute("select count(*), count(distinct path) from files").fetchone() == (40, 40)
    assert db.execute("select count(*) from vectors").fetchone()[0] == 40


def test_a_new_store_is_private(tmp_path):
    make_image(tmp_path / "photos" / "a.png")
    with Library(tmp_path / "store", create=True) as lib:
        lib.index([tmp_path / "photos"], model=MODEL)
        lib.search("a dog", k=1, model=MODEL)
    assert (tmp_path / "store").stat().st_mode & 0o777 == 0o700
    for path in (tmp_path / "store").rglob("*"):
        if path.is_file():
            assert path.stat().st_mode & 0o077 == 0, path


@pytest.mark.parametrize("name", ["q?mode=ro", "My%20Photos", "a#b", "per%cent"])
def test_odd_store_paths_keep_the_catalog_inside_the_store(tmp_path, name):
    """Characters that mean something in a URL are only characters in a folder name."""
    (tmp_path / "My Photos").mkdir()
    make_image(tmp_path / "photos" / "a.png")
    store = tmp_path / name
    with Library(store, create=True) as lib:
        lib.index([tmp_path / "photos"], model=MODEL)
    assert (store / "catalog.db").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["My Photos", "photos", name])
    assert list((tmp_path / "My Photos").iterdir()) == []
    with Library(store) as lib:
        assert lib.status().files_ok == 1


def test_a_file_given_as_the_store_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["status", "--store", str(tmp_path / "notes.txt")])
    assert result.exit_code == 1 and "is a file" in result.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_writer_lock_is_reentrant_within_a_process(tmp_path):
    """A store already writing enters again without taking the lock twice (which would
    refuse, not hang: wait=False), and holds it until the outer block ends."""
    store = Store(tmp_path / "store", wait=False)
    with store.writing():
        with (
            store.writing(),
            pytest.raises(StoreBusy),
            Store(tmp_path / "store", wait=False).writing(),
        ):
            pass
        with pytest.raises(StoreBusy), Store(tmp_path / "store", wait=False).writing():
            pass
    with Store(tmp_path / "store", wait=False).writing():
        pass


def test_a_sharing_writer_holds_the_lock_only_while_it_commits(tmp_path):
    """Store.sharing (a watcher's runs): between its commits another writer gets in at
    once; during one of its commits (on any of its threads) the lock is held."""
    import threading

    store = Store(tmp_path / "store")
    other = Store(tmp_path / "store", wait=False)
    with store.sharing():
        with other.writing():  # between commits: free
            pass
        with store.catalog.write(), pytest.raises(StoreBusy), other.writing():
            pass
        committed = threading.Event()
        entered = threading.Event()

        def commit_on_a_thread():
            with store.catalog.write():
                entered.set()
                committed.wait(10)

        thread = threading.Thread(target=commit_on_a_thread)
        thread.start()
        assert entered.wait(10)
        with pytest.raises(StoreBusy), other.writing():
            pass
        committed.set()
        thread.join(10)
        with other.writing():
            pass
    store.close()
    other.close()


def test_writers_on_two_machines_sharing_a_postgresql_catalog_take_turns(postgres_server, tmp_path):
    """Two stores on different folders (two machines' local flocks) sharing one catalog:
    the second writer is refused while the first writes, and gets in once it is done."""
    import threading

    from clipsearch.storage.database import DatabaseBusy

    url = postgres_server()
    first = Store(tmp_path / "machine-a", db_url=url)
    second = Store(tmp_path / "machine-b", db_url=url, wait=False)
    waited = []
    third = Store(tmp_path / "machine-c", db_url=url, on_wait=waited.append)
    try:
        with first.writing():
            with pytest.raises(DatabaseBusy, match="another machine|--wait"), second.writing():
                pass
            done = threading.Event()

            def write_when_free():
                with third.writing():
                    done.set()

            thread = threading.Thread(target=write_when_free)
            thread.start()
            assert not done.wait(1.0)  # it waits for the first
        thread.join(30)
        assert done.is_set() and waited == ["on another machine"]
        with second.writing():  # free again
            pass
    finally:
        for store in (first, second, third):
            store.close()
