"""The pass that reads text in images: after the vectors, remembered by the store, once per
file (a picture without text too), and a run killed in the middle of it loses nothing and
is finished by the next."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys

import pytest
from helpers import make_image, sign

from clipsearch import Library
from clipsearch.core.config import IndexOptions
from clipsearch.indexing import text

pytest.importorskip("rapidocr_onnxruntime", reason="the ocr extra is not installed")


def test_index_ocr_finds_pictures_by_their_words_and_the_store_keeps_doing_it(tmp_path):
    photos = tmp_path / "photos"
    sign(photos / "IMG_0001.jpg", ["BAKERY", "since 1887"], seed=1)
    make_image(photos / "IMG_0002.jpg", size=(200, 150), seed=2)  # no text
    with Library(tmp_path / "store", create=True) as lib:
        report = lib.index([photos], model="random:tiny", options=IndexOptions(ocr=True))
        assert (report.added, report.text_read) == (2, 2)
        top = lib.search("bakery").results[0]
        assert top.path.endswith("IMG_0001.jpg") and top.matched == {"text": ["bakery"]}
        (found,) = lib.search('text:"since 1887"', mode="text").results
        assert found.path.endswith("IMG_0001.jpg")
        lines = lib.catalog.words.lines(found.file_id)
        assert [line.text.lower().replace(" ", "") for line in lines] == ["bakery", "since1887"]

        sign(photos / "IMG_0003.jpg", ["Platform 9"], seed=3)
        again = lib.index([photos], model="random:tiny")  # no --ocr: the store remembers
        assert (again.added, again.text_read) == (1, 1)  # the new one; none read twice
        assert lib.search("platform", mode="text").results[0].path.endswith("IMG_0003.jpg")
        assert lib.index([photos], model="random:tiny").text_read == 0
        off = lib.index([photos], model="random:tiny", options=IndexOptions(ocr=False))
        assert off.text_read == 0 and not lib.store.reads_text()


def test_a_run_killed_while_reading_text_loses_nothing_it_read(tmp_path):
    """kill -9 at the 19th picture's text: the first batch (16) stays read, the catalog
    whole; the next run reads the other four, and only those."""
    assert text.BATCH == 16
    photos = tmp_path / "photos"
    for i in range(20):
        sign(photos / f"p{i:02d}.jpg", [f"Gate {100 + i}"], seed=i, size=(360, 160), height=48)
    store = tmp_path / "store"
    with Library(store, create=True) as lib:
        lib.index([photos], model="random:tiny")
    command = [sys.executable, "-m", "clipsearch", "index", str(photos), "--store", str(store),
               "--ocr", "--workers", "1"]  # fmt: skip
    env = {**os.environ, "CLIPSEARCH_FAULT": "text-read:p18=kill"}
    killed = subprocess.run(command, env=env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    with sqlite3.connect(store / "catalog.db") as db:
        assert db.execute("pragma integrity_check").fetchone() == ("ok",)
        read = db.execute("select count(*) from files where text_read is not null").fetchone()
        assert read == (16,)
    with Library(store) as lib:
        assert lib.index([photos], model="random:tiny").text_read == 4
        for i in (0, 15, 16, 19):
            # the text field only: the folder's name (pytest-1NN) may hold the number too
            (hit,) = lib.search(f'text:"gate {100 + i}"', mode="text").results
            assert hit.path.endswith(f"p{i:02d}.jpg")
