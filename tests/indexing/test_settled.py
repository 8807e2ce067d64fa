"""Unchanged re-runs answered from a walk alone (settled.py), on real files, a real
catalog and a real vector index: the answer is the full run's, and anything the full run
would have acted on makes the next run a full one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import make_image

from clipsearch import Library, load_model
from clipsearch.core import versions
from clipsearch.core.config import IndexOptions
from clipsearch.indexing import settled as settled_module
from clipsearch.indexing.report import IndexReport
from clipsearch.storage.layout import SETTLED_FILE

SAID = ("added", "updated", "moved", "copied", "removed", "failed", "unchanged", "failures",
        "problems", "index_action", "preset", "exif_read_again", "text_read")  # fmt: skip


def run(store: Path, roots: list, model: str = "random:tiny", quick: bool = True, **options):
    with Library(store, create=True) as lib:
        options = IndexOptions(workers=1, **options)
        return lib.index([str(r) for r in roots], model, options, quick=quick)


def settled(report: IndexReport) -> bool:
    """Answered from the note: the run's profile has that part alone."""
    return list(report.profile) == ["settled"]


def said(report: IndexReport) -> dict:
    return {k: getattr(report, k) for k in SAID}


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    for i in range(5):
        make_image(folder / f"img{i}.png", seed=i)
    make_image(folder / "sub" / "deep.jpg", seed=10, size=(60, 50))
    (folder / "broken.jpg").write_bytes(b"no JPEG")  # a failure, kept in the catalog
    return folder


@pytest.fixture
def store(tmp_path, photos):
    """A store that has indexed the photos, then found nothing to do: its note is left."""
    store = tmp_path / "store"
    first = run(store, [photos])
    assert (first.added, first.failed) == (6, 1)
    quiet = run(store, [photos])
    assert not settled(quiet) and quiet.unchanged == 7
    return store


def test_an_unchanged_rerun_is_answered_from_its_walk_as_the_full_run_answers(store, photos):
    full = run(store, [photos], quick=False)
    answered = run(store, [photos])
    assert settled(answered) and not settled(full)
    assert said(answered) == said(full)
    assert said(answered)["unchanged"] == 7 and said(answered)["index_action"] == "unchanged"


def rename(photos: Path, store: Path) -> None:
    (photos / "img1.png").rename(photos / "renamed.png")


def forget_by_hand(photos: Path, store: Path) -> None:
    with Library(store) as lib:  # another writer: the catalog's generation moves on
        assert lib.forget([str(photos / "img3.png")]) == 1


def forget_the_failure_by_hand(photos: Path, store: Path) -> None:
    """A write that leaves the vector index as it was: only the generation tells."""
    with Library(store) as lib:
        assert lib.forget([str(photos / "broken.jpg")]) == 1


def lose_the_index(photos: Path, store: Path) -> None:
    for file in (store / "indexes").glob("*.faiss"):
        file.unlink()


def damage_the_note(photos: Path, store: Path) -> None:
    (store / SETTLED_FILE).write_text('{"a": [1, 2')


CHANGES = {
    "a photo added": (lambda p, s: make_image(p / "sub" / "new.png", seed=20), "added", 1),
    "a photo changed": (lambda p, s: make_image(p / "img0.png", seed=30), "updated", 1),
    "a photo deleted": (lambda p, s: (p / "img2.png").unlink(), "removed", 1),
    "a photo renamed": (rename, "moved", 1),
    "a photo forgotten by another writer": (forget_by_hand, "added", 1),
    "a failure forgotten by another writer": (forget_the_failure_by_hand, "failed", 1),
    "the vector index deleted": (lose_the_index, "index_action", "rebuilt"),
    "the note damaged": (damage_the_note, "unchanged", 7),
}


@pytest.mark.parametrize("change", CHANGES, ids=list(CHANGES))
def test_a_change_the_full_run_would_act_on_makes_a_full_run(store, photos, change):
    make, field, value = CHANGES[change]
    make(photos, store)
    report = run(store, [photos])
    assert not settled(report) and getattr(report, field) == value


def test_the_note_is_kept_per_roots_and_options_and_the_next_quiet_run_leaves_one(store, photos):
    sub = run(store, [photos / "sub"])
    assert not settled(sub) and sub.unchanged == 1  # other roots: a note of their own
    assert settled(run(store, [photos / "sub"])) and settled(run(store, [photos]))
    excluding = run(store, [photos], exclude=["img4*"])
    assert not settled(excluding) and excluding.removed == 1
    make_image(photos / "img9.png", seed=9)
    assert run(store, [photos]).added == 2  # img4 and img9: a run with work leaves no note
    assert not settled(run(store, [photos]))
    assert settled(run(store, [photos]))


def test_a_model_saved_over_is_loaded_again(tmp_path, photos):
    model = tmp_path / "model"
    load_model("random:tiny").save(str(model))
    store = tmp_path / "store"
    run(store, [photos], str(model))
    run(store, [photos], str(model))
    assert settled(run(store, [photos], str(model)))
    weights = next(model.glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    again = run(store, [photos], str(model))  # the same weights: loaded, nothing to do
    assert not settled(again) and again.unchanged == 7 and "model load" in again.profile


@pytest.mark.parametrize(
    "where, name, value",
    [
        (settled_module, "__version__", "99.0"),
        (versions, "SCHEMA_HEAD", "9999"),
        (versions, "EXIF_READ", 99),
        (versions, "TEXT_READ", 99),
    ],  # fmt: skip
    ids=["version", "schema", "EXIF reading", "text reading"],
)
def test_another_clipsearch_runs_in_full(store, photos, monkeypatch, where, name, value):
    """A newer clipsearch may read again what an older one left alone."""
    monkeypatch.setattr(where, name, value)
    assert not settled(run(store, [photos]))


def test_a_run_that_meets_a_problem_leaves_no_note(tmp_path, photos):
    store, gone = tmp_path / "store", tmp_path / "unplugged"
    run(store, [photos, gone])
    for _ in range(2):
        report = run(store, [photos, gone])
        assert not settled(report) and [p.path for p in report.problems] == [str(gone)]


def test_reading_text_chosen_since_makes_a_full_run(store, photos):
    pytest.importorskip("rapidocr_onnxruntime")
    report = run(store, [photos], ocr=True)
    assert not settled(report) and report.text_read == 6
    assert not settled(run(store, [photos]))  # remembered: read text, found nothing to do
    assert settled(run(store, [photos])) and settled(run(store, [photos], ocr=True))
    assert not settled(run(store, [photos], ocr=False))


def test_the_command_answers_before_sqlalchemy_numpy_or_faiss_are_imported(store, photos):
    code = (
        "import sys; from clipsearch.cli import app; "
        "app(sys.argv[1:], standalone_mode=False); "
        "print(*[m for m in ('sqlalchemy', 'numpy', 'faiss', 'torch') if m in sys.modules], "
        "file=sys.stderr)"
    )
    args = ["index", str(photos), "--store", str(store), "-m", "random:tiny"]
    answered = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert answered.returncode == 0, answered.stderr
    assert answered.stderr.strip() == ""
    full = subprocess.run([sys.executable, "-c", code, *args, "--exclude", "*.gif"],
                          capture_output=True, text=True)  # fmt: skip
    assert full.returncode == 0 and "sqlalchemy" in full.stderr
    lines = [answered.stdout.splitlines(), full.stdout.splitlines()]
    assert [line.split(": ", 1)[1] for line, _ in zip(*lines)] == [  # the same counts
        line.split(": ", 1)[1] for _, line in zip(*lines)
    ]
    assert not list(store.glob("catalog.db-*")), "the catalog's read left SQLite's files"
