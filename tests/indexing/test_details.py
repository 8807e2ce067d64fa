"""Photos indexed before lens and place were read get them on the next run, from the
header alone: nothing is decoded or embedded again, and a run cut short leaves the rest."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys

from helpers import camera_photo

from clipsearch import Library


def as_an_older_reading_left_them(catalog_db) -> list[tuple]:
    """The rows as a store indexed before migration 0006 has them after it: lens, place
    and the reading unknown. What the vectors were, to compare."""
    with sqlite3.connect(catalog_db) as db:
        db.execute(
            "update files set lens = null, latitude = null, longitude = null, exif_read = null"
        )
        return db.execute("select file_id, vector from vectors order by file_id").fetchall()


def test_an_older_store_reads_lens_and_place_on_the_next_run_without_embedding(tmp_path):
    photos = tmp_path / "photos"
    camera_photo(photos / "eiffel.jpg", 1, "Canon", "EOS R5", (48.8584, 2.2945), "RF50mm")
    camera_photo(photos / "plain.jpg", 2, None, None)
    with Library(tmp_path / "store", create=True) as lib:
        lib.index([photos], model="random:tiny")
    vectors = as_an_older_reading_left_them(tmp_path / "store" / "catalog.db")
    with Library(tmp_path / "store") as lib:
        report = lib.index([photos], model="random:tiny")
        assert (report.added, report.updated, report.exif_read_again) == (0, 0, 2)
        assert lib.loads == []  # no model was loaded: nothing was embedded
        (hit,) = lib.search("x", filters=lib_filters(near="48.8584,2.2945,1")).results
        assert hit.path.endswith("eiffel.jpg") and hit.lens == "RF50mm"
        assert lib.index([photos], model="random:tiny").exif_read_again == 0  # once
    with sqlite3.connect(tmp_path / "store" / "catalog.db") as db:
        assert (
            db.execute("select file_id, vector from vectors order by file_id").fetchall() == vectors
        )


def lib_filters(**given):
    from clipsearch.query.search import Filters

    return Filters.parse(**given)


def test_a_kill_while_reading_leaves_the_catalog_whole_and_the_next_run_goes_on(tmp_path):
    photos = tmp_path / "photos"
    for i in range(5):
        camera_photo(photos / f"{i}.jpg", i, None, None, (10.0 + i, 20.0))
    store = tmp_path / "store"
    with Library(store, create=True) as lib:
        lib.index([photos], model="random:tiny")
    as_an_older_reading_left_them(store / "catalog.db")
    command = [sys.executable, "-m", "clipsearch", "index", str(photos), "--store", str(store)]
    killed = subprocess.run(
        command, env={**os.environ, "CLIPSEARCH_FAULT": "exif-read:3.jpg=kill"}, capture_output=True
    )
    assert killed.returncode == -signal.SIGKILL
    with sqlite3.connect(store / "catalog.db") as db:
        assert db.execute("pragma integrity_check").fetchone() == ("ok",)
        assert db.execute("select count(*) from files where state = 'ok'").fetchone() == (5,)
    with Library(store) as lib:
        report = lib.index([photos], model="random:tiny")
        assert (report.exif_read_again, report.added, report.updated) == (5, 0, 0)
        found = lib.search("x", k=10, filters=lib_filters(near="12,20,1")).results
        assert [r.path.rsplit("/", 1)[1] for r in found] == ["2.jpg"]
