"""Indexing real files into a real SQLite catalog and FAISS index: incremental, crash-safe."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from helpers import index, make_image, wait_until_gone
from PIL import Image

from clipsearch.indexing.pool import WORKER_DIED
from clipsearch.storage.store import Store


def catalog_rows(store_dir):
    db = sqlite3.connect(store_dir / "catalog.db")
    files = db.execute("select path, state, error from files order by path").fetchall()
    vectors = db.execute("select count(*) from vectors").fetchone()[0]
    db.close()
    return files, vectors


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    for i in range(6):
        make_image(folder / f"img{i}.png", seed=i)
    make_image(folder / "sub" / "deep.jpg", seed=10, size=(300, 200))
    return folder


def test_first_run_indexes_everything(tmp_path, photos, tiny):
    report = index(tmp_path / "store", [photos], tiny)
    assert (report.added, report.failed, report.unchanged) == (7, 0, 0)
    files, vectors = catalog_rows(tmp_path / "store")
    assert len(files) == 7 and vectors == 7
    assert report.preset == "exact" and report.index_action == "rebuilt"
    assert list((tmp_path / "store" / "indexes").glob("*.faiss"))


def test_second_run_touches_nothing(tmp_path, photos, tiny):
    index(tmp_path / "store", [photos], tiny)
    report = index(tmp_path / "store", [photos], tiny)
    assert (report.added, report.updated, report.removed, report.unchanged) == (0, 0, 0, 7)
    assert report.index_action == "unchanged"


def test_changed_moved_copied_and_deleted(tmp_path, photos, tiny):
    store = tmp_path / "store"
    index(store, [photos], tiny)
    make_image(photos / "img0.png", seed=99)  # changed content
    os.utime(photos / "img0.png", ns=(1, 1))
    (photos / "img1.png").rename(photos / "moved.png")
    shutil.copy(photos / "img2.png", photos / "copy.png")
    (photos / "img3.png").unlink()
    report = index(store, [photos], tiny)
    assert (report.updated, report.moved, report.copied, report.removed) == (1, 1, 1, 1)
    files, vectors = catalog_rows(store)
    paths = {Path(p).name for p, _, _ in files}
    assert {"moved.png", "copy.png"} <= paths and not {"img1.png", "img3.png"} & paths
    assert vectors == len(files) == 7


def test_moved_file_keeps_its_vector_without_running_the_model(tmp_path, photos, tiny):
    store = tmp_path / "store"
    index(store, [photos], tiny)
    db = sqlite3.connect(store / "catalog.db")
    before = db.execute(
        "select v.vector from vectors v join files f on f.id=v.file_id "
        "where f.path like '%img4.png'"
    ).fetchone()[0]
    db.close()
    (photos / "img4.png").rename(photos / "sub" / "renamed.png")
    report = index(store, [photos], tiny)
    assert report.moved == 1 and report.added == 0
    db = sqlite3.connect(store / "catalog.db")
    after = db.execute(
        "select v.vector from vectors v join files f on f.id=v.file_id "
        "where f.path like '%renamed.png'"
    ).fetchone()[0]
    assert before == after


def test_bad_files_are_recorded_and_the_run_goes_on(tmp_path, photos, tiny):
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "text.png").write_text("not an image")
    good = make_image(photos / "trunc.jpg", size=(400, 300), quality=95)
    good.write_bytes(good.read_bytes()[:3000])
    Image.new("1", (20000, 10000)).save(photos / "bomb.png")
    locked = make_image(photos / "locked.png", seed=5)
    locked.chmod(0)
    odd = photos / os.fsdecode(b"caf\xe9 \xff.png")  # not UTF-8
    make_image(odd, seed=6)
    make_image(photos / "ünïcødé 🐶.png", seed=7)
    (photos / "loop").symlink_to(photos, target_is_directory=True)
    report = index(tmp_path / "store", [photos], tiny, follow_symlinks=True)
    reasons = dict(report.failures)
    assert "empty" in reasons[str(photos / "empty.jpg")]
    assert "not an image" in reasons[str(photos / "text.png")]
    assert "decode" in reasons[str(photos / "trunc.jpg")]
    assert "decompression bomb" in reasons[str(photos / "bomb.png")]
    if os.geteuid() != 0:  # root reads anything
        assert "permission" in reasons[str(locked)]
    assert any("symlink loop" in p.reason for p in report.problems)
    files, vectors = catalog_rows(tmp_path / "store")
    ok = [p for p, state, _ in files if state == "ok"]
    assert report.added == len(ok) == vectors and report.added >= 9
    with Store(tmp_path / "store") as store:
        assert str(odd) in store.catalog.files.under([str(photos)])


def test_failed_file_is_retried_when_it_changes(tmp_path, photos, tiny):
    bad = photos / "later.png"
    bad.write_text("broken")
    store = tmp_path / "store"
    assert index(store, [photos], tiny).failed == 1
    assert index(store, [photos], tiny).failed == 0  # unchanged failure: not retried
    make_image(bad, seed=3)
    report = index(store, [photos], tiny)
    assert report.updated == 1 and report.failed == 0
    files, _ = catalog_rows(store)
    assert all(state == "ok" for _, state, _ in files)


def test_missing_root_changes_nothing(tmp_path, photos, tiny):
    store = tmp_path / "store"
    index(store, [photos], tiny)
    report = index(store, [tmp_path / "unplugged-drive", photos], tiny)
    assert report.removed == 0
    assert any("does not exist" in p.reason for p in report.problems)


def test_hidden_and_excluded_files(tmp_path, photos, tiny):
    make_image(photos / ".hidden.png", seed=20)
    make_image(photos / "raw" / "skip.png", seed=21)
    report = index(tmp_path / "s1", [photos], tiny, exclude=["raw"])
    assert report.added == 7
    report = index(tmp_path / "s2", [photos], tiny, include_hidden=True)
    assert report.added == 9


def test_dry_run_writes_nothing(tmp_path, photos, tiny):
    report = index(tmp_path / "store", [photos], tiny, dry_run=True)
    assert report.planned["embed"] == 7
    assert not (tmp_path / "store").exists()  # not even the folder, let alone a catalog
    index(tmp_path / "store", [photos], tiny)
    (photos / "img0.png").unlink()
    before = (tmp_path / "store" / "catalog.db").read_bytes()
    report = index(tmp_path / "store", [photos], tiny, dry_run=True)
    assert report.planned == {"embed": 0, "remove": 1, "unchanged": 6}
    assert (tmp_path / "store" / "catalog.db").read_bytes() == before


def test_two_models_side_by_side(tmp_path, photos, tiny):
    from clipsearch.models.encoder import load_model

    other = load_model("random:tiny:1")
    index(tmp_path / "store", [photos], tiny)
    report = index(tmp_path / "store", [photos], other)
    assert report.added == 7  # vectors for the second model, same file rows
    with Store(tmp_path / "store") as store:
        counts = sorted(n for _, n in store.catalog.models.counted())
    assert counts == [7, 7]


def test_index_write_failure_keeps_catalog(tmp_path, photos, tiny):
    """Disk full while writing the index (ENOSPC from /dev/full): clear message, catalog whole,
    and the next query rebuilds the index."""
    store = tmp_path / "store"
    index(store, [photos], tiny)
    make_image(photos / "new.png", seed=30)
    with Store(store) as s:
        model_id = s.catalog.models.counted()[0][0].id
        row = s.catalog.indexes.row(model_id)
        seq = s.catalog.vectors.log_position(model_id)
    target = store / "indexes" / f"model{model_id}-exact-{seq + 1}.faiss.{os.getpid()}.tmp"
    target.symlink_to("/dev/full")
    report = index(store, [photos], tiny)
    assert report.added == 1 and "No space left" in report.index_error
    _, vectors = catalog_rows(store)
    assert vectors == 8
    with Store(store) as s:
        loaded, action = s.indexes.get(model_id)
        assert s.catalog.indexes.row(model_id).filename == row.filename
    assert loaded.count == 8 and action == "updated"


def test_corrupt_index_file_is_rebuilt(tmp_path, photos, tiny):
    store = tmp_path / "store"
    index(store, [photos], tiny)
    for f in (store / "indexes").glob("*.faiss"):
        f.write_bytes(b"garbage")
    with Store(store) as s:
        loaded, action = s.indexes.get(s.catalog.models.counted()[0][0].id)
    assert action == "rebuilt" and loaded.count == 7


KILL_SCRIPT = """
import sys
from clipsearch.models.encoder import load_model
from clipsearch.indexing.indexer import IndexOptions, Indexer
from clipsearch.storage.store import Store
store = Store(sys.argv[1])
Indexer(store, load_model("random:tiny"), IndexOptions(batch_size=4, workers=1)).run([sys.argv[2]])
"""


def run_killed(store, photos, fault: str, **env) -> subprocess.CompletedProcess:
    """The indexer in its own process, killed (SIGKILL) at a fault-injection point."""
    env = {**os.environ, "CLIPSEARCH_FAULT": fault, **env}
    return subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(store), str(photos)], env=env, timeout=300
    )


def assert_whole(store, count: int) -> None:
    """Every image once, every file row with its vector, the FAISS index equal to the
    catalog."""
    files, vectors = catalog_rows(store)
    assert len(files) == vectors == count and len({p for p, _, _ in files}) == count
    with Store(store) as s:
        model_id = s.catalog.models.counted()[0][0].id
        loaded, _ = s.indexes.get(model_id)
        ids = {int(loaded.index.id_map.at(i)) for i in range(loaded.index.ntotal)}
        assert ids - loaded.tombstones == set(s.catalog.vectors.ids(model_id).tolist())


def test_kill_9_then_rerun_loses_nothing(tmp_path, tiny):
    photos = tmp_path / "many"
    for i in range(120):
        make_image(photos / f"{i:03d}.png", seed=i)
    store = tmp_path / "store"
    assert run_killed(store, photos, "batch-committed:batch 3.=kill").returncode == -9
    files, vectors = catalog_rows(store)
    assert vectors == len(files) == 12  # three batches of four, committed whole
    report = index(store, [photos], tiny)
    assert report.added == 120 - vectors and report.unchanged == vectors
    assert_whole(store, 120)


def test_a_batch_commits_while_the_next_one_is_embedded(tmp_path, photos, tiny):
    """Each commit runs on a writer thread while the model embeds the next batch (a GPU
    would otherwise stand still for it): every commit but the last waits until the model
    has begun the next batch, which a commit on the model's own thread would never see."""
    import threading

    from clipsearch.indexing.indexer import Indexer, IndexOptions
    from clipsearch.indexing.pipeline import Pipeline

    began = threading.Condition()
    batches: list[str] = []  # the thread each model batch ran on
    commits: list[tuple[str, bool]] = []  # (thread, the next batch had begun)

    class Watched(Pipeline):
        def vectors(self, decoded):
            with began:
                batches.append(threading.current_thread().name)
                began.notify_all()
            return super().vectors(decoded)

        def write(self, s, chunk, outcomes):
            number = len(commits) + 1
            with began:
                overlapped = number == 4 or began.wait_for(lambda: len(batches) > number, 10)
            commits.append((threading.current_thread().name, overlapped))
            super().write(s, chunk, outcomes)

    class Watching(Indexer):
        pipeline = Watched

    with Store(tmp_path / "store") as store:
        report = Watching(store, tiny, IndexOptions(workers=1, batch_size=2)).run([str(photos)])
    assert report.added == 7 and len(commits) == 4  # batches of 2, 2, 2, 1
    assert {name for name, _ in commits}.isdisjoint(batches)
    assert all(overlapped for _, overlapped in commits)
    assert_whole(tmp_path / "store", 7)


def test_a_commit_that_fails_stops_the_run_and_keeps_the_batches_before_it(tmp_path, photos, tiny):
    """The catalog refuses a batch (here a trigger, as a full disk would): the error
    reaches the caller, the batches committed before it stay whole, nothing of it is
    written, and the next run finishes the work."""
    store = tmp_path / "store"
    index(store, [photos], tiny)
    for i in range(6):
        make_image(photos / "more" / f"{i}.png", seed=50 + i)
    db = sqlite3.connect(store / "catalog.db")
    db.execute(
        "CREATE TRIGGER full BEFORE INSERT ON vectors WHEN (SELECT count(*) FROM vectors) >= 11 "
        "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
    )
    db.commit()
    with pytest.raises(Exception, match="disk is full"):
        index(store, [photos], tiny, batch_size=2)
    files, vectors = catalog_rows(store)
    assert len(files) == vectors == 11  # two batches of two after the first seven
    db.execute("DROP TRIGGER full")
    db.commit()
    db.close()
    assert index(store, [photos], tiny).added == 2
    assert_whole(store, 13)


def test_heic_without_pillow_heif_is_recorded_with_install_hint(tmp_path, photos, tiny):
    from clipsearch.images.formats import heif_support

    if heif_support():
        pytest.skip("pillow-heif is installed here")
    (photos / "phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64)
    report = index(tmp_path / "store", [photos], tiny)
    assert report.skipped_heif == 1
    assert "pillow-heif" in dict(report.failures)[str(photos / "phone.heic")]
    from clipsearch.library import Library

    with Library(tmp_path / "store") as lib:
        assert lib.status().heif_skipped == 1


LOCKED_OUT_INDEX = """
import sys
from clipsearch.models.encoder import load_model
from clipsearch.indexing.indexer import IndexOptions, Indexer
from clipsearch.storage.store import Store
report = Indexer(Store(sys.argv[1]), load_model("random:tiny"), IndexOptions(workers=1)).run(
    [sys.argv[2]]
)
print(dict(report.failures)[sys.argv[3]])
"""
DROP_FILE_OVERRIDES = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


@pytest.mark.skipif(os.geteuid() != 0, reason="covered by the permission case above")
def test_permission_denied_as_root_without_file_overrides(tmp_path, photos):
    """Root reads every file through two capabilities; without them a mode-0 file gives
    root a real EACCES, and the indexer (workers included) must record it and go on."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop root's file capabilities")
    locked = make_image(photos / "locked.png", seed=9)
    locked.chmod(0)
    proc = subprocess.run(
        [*DROP_FILE_OVERRIDES, sys.executable, "-c", LOCKED_OUT_INDEX]
        + [str(tmp_path / "store"), str(photos), str(locked)],
        capture_output=True,
        text=True,
    )
    if "setpriv:" in proc.stderr:
        pytest.skip(f"cannot drop capabilities here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    assert "permission denied" in proc.stdout
    files, vectors = catalog_rows(tmp_path / "store")
    assert vectors == sum(state == "ok" for _, state, _ in files) == len(files) - 1


POISON_DECODE = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # a 30 GB resize would fail here
from clipsearch.indexing.worker import decode_for_index
pixels, info, error = decode_for_index(sys.argv[1], 224, (int(sys.argv[2]), int(sys.argv[3])))
print(error or pixels.shape)
"""


def test_a_tiny_image_of_extreme_aspect_decodes_in_bounded_memory(tmp_path):
    """1 x 200,000 pixels in a few hundred bytes: its short side scaled to 224 would be
    224 x 44.8 million pixels."""
    poison = tmp_path / "poison.png"
    Image.new("RGB", (1, 200_000), (200, 30, 30)).save(poison, optimize=True)
    assert poison.stat().st_size < 2000
    st = poison.stat()
    args = [str(poison), str(st.st_size), str(st.st_mtime_ns)]
    proc = subprocess.run(
        [sys.executable, "-c", POISON_DECODE, *args], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(224, 224, 3)"


def test_a_file_that_kills_its_decoding_process_fails_alone(tmp_path, photos, tiny, monkeypatch):
    """What the out-of-memory killer does to a worker: the batch is decoded again one by
    one, the file that kills a worker again is recorded, the others are indexed."""
    make_image(photos / "killer.png", seed=40)
    monkeypatch.setenv("CLIPSEARCH_FAULT", "decode:killer=kill")
    report = index(tmp_path / "store", [photos], tiny, batch_size=3)
    assert dict(report.failures) == {str(photos / "killer.png"): WORKER_DIED}
    assert report.added == 7
    monkeypatch.delenv("CLIPSEARCH_FAULT")
    assert index(tmp_path / "store", [photos], tiny).unchanged == 8  # not retried until changed


def bmp_pair(folder):
    """Two uncompressed images of one size that differ only in the middle: the same
    cheap fingerprint (size, first and last 64 KiB), different content."""
    rows = np.full((400, 400, 3), 90, np.uint8)
    a, b = rows.copy(), rows.copy()
    b[190:210, 190:210] = 250
    Image.fromarray(a).save(folder / "scan-a.bmp")
    Image.fromarray(b).save(folder / "scan-b.bmp")
    return folder / "scan-a.bmp", folder / "scan-b.bmp"


def test_a_vector_is_reused_only_for_the_same_content(tmp_path, tiny):
    from clipsearch.indexing.content import file_fingerprint

    photos = tmp_path / "photos"
    photos.mkdir()
    a, b = bmp_pair(photos)
    assert file_fingerprint(str(a), a.stat().st_size) == file_fingerprint(str(b), b.stat().st_size)
    b.rename(tmp_path / "later.bmp")
    index(tmp_path / "store", [photos], tiny)
    (tmp_path / "later.bmp").rename(b)
    shutil.copy(a, photos / "copy-of-a.bmp")
    report = index(tmp_path / "store", [photos], tiny)
    assert (report.added, report.copied) == (1, 1)  # b embedded, the true copy reused
    with Store(tmp_path / "store") as s:
        model_id = s.catalog.models.counted()[0][0].id
        rows = s.catalog.files.under([str(photos)])
        ids, vectors = s.catalog.vectors.get(model_id)
    by_path = dict(zip([rows[p].id for p in sorted(rows)], sorted(rows)))
    vector = {by_path[i]: v for i, v in zip(ids, vectors)}
    assert np.array_equal(vector[str(a)], vector[str(photos / "copy-of-a.bmp")])
    assert not np.array_equal(vector[str(a)], vector[str(b)])


def test_an_unchanged_rerun_reads_no_file(tmp_path, photos, tiny, monkeypatch):
    index(tmp_path / "store", [photos], tiny)
    opened, real_open = [], open

    def spy(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    report = index(tmp_path / "store", [photos], tiny)
    assert report.unchanged == 7
    assert not [p for p in opened if p.startswith(str(photos))]


def test_overlapping_and_repeated_roots_index_each_file_once(tmp_path, photos, tiny):
    report = index(tmp_path / "store", [photos, f"{photos}/", photos / "img0.png"], tiny)
    assert report.added == 7 and report.failed == 0
    files, vectors = catalog_rows(tmp_path / "store")
    assert len(files) == vectors == 7


def test_index_files_left_by_a_crash_are_removed(tmp_path, photos, tiny):
    store = tmp_path / "store"
    assert run_killed(store, photos, "index-written=kill").returncode == -9
    left = sorted(p.name for p in (store / "indexes").iterdir())
    assert len(left) == 1  # written, never recorded: nothing points at it
    (store / "indexes" / "model1-hnsw-3.faiss.999.tmp").write_bytes(b"half")
    make_image(photos / "new.png", seed=50)
    index(store, [photos], tiny)
    with Store(store) as s:
        current = s.indexes.file_for(s.catalog.indexes.row(1))
    assert [p.name for p in (store / "indexes").iterdir()] == [current.name]


INDEX_CLI = [sys.executable, "-m", "clipsearch", "index", "--model", "random:tiny"]


def test_kill_9_leaves_no_decoding_process_behind(tmp_path, photos):
    marker = f"CLIPSEARCH_TEST_RUN={uuid.uuid4()}"
    for i in range(20):
        make_image(photos / "more" / f"{i}.png", seed=100 + i)
    env = {**os.environ, "CLIPSEARCH_FAULT": "batch-committed:batch 2.=kill"}
    env[marker.split("=")[0]] = marker.split("=")[1]
    args = [str(photos), "--store", str(tmp_path / "store"), "--workers", "2", "--batch-size", "4"]
    proc = subprocess.run([*INDEX_CLI, *args], env=env, capture_output=True, timeout=300)
    assert proc.returncode == -9
    assert wait_until_gone(marker) == []
    assert b"resource_tracker" not in proc.stderr and b"leaked" not in proc.stderr


def test_sigterm_stops_like_ctrl_c(tmp_path, photos):
    marker = f"CLIPSEARCH_TEST_RUN={uuid.uuid4()}"
    env = {**os.environ, "CLIPSEARCH_FAULT": "batch-committed:batch 1.=sleep:30"}
    env[marker.split("=")[0]] = marker.split("=")[1]
    args = [str(photos), "--store", str(tmp_path / "store"), "--workers", "2", "--batch-size", "2"]
    proc = subprocess.Popen([*INDEX_CLI, *args], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and catalog_count(tmp_path / "store") < 2:
        time.sleep(0.2)
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and err.strip().endswith("Stopped.") and "Traceback" not in err, (
        err
    )
    assert catalog_rows(tmp_path / "store")[1] == 2  # the committed batch is kept
    assert wait_until_gone(marker) == []


def catalog_count(store) -> int:
    try:
        return catalog_rows(store)[1]
    except sqlite3.Error:
        return 0


CRASH_POINTS = (
    "batch-committed:batch {k}.=kill",
    "index-written=kill",
    "record-index=kill",
    "decode={k}=exit",
)


@pytest.mark.slow
def test_twenty_kills_at_random_moments_then_a_rerun_lose_nothing(tmp_path, tiny):
    """kill -9 at random times and at every crash point the code has, with files added,
    changed and deleted between the runs: the last run leaves every image once, every
    vector with its file, the FAISS index equal to the catalog and no process behind."""
    rng = random.Random(0)
    photos = tmp_path / "photos"
    for i in range(60):
        make_image(photos / f"{i:03d}.png", seed=i)
    store = tmp_path / "store"
    marker = f"CLIPSEARCH_TEST_RUN={uuid.uuid4()}"
    for kill in range(20):
        victim = photos / f"{rng.randrange(60):03d}.png"
        if rng.random() < 0.3 and victim.exists():
            victim.unlink()
        elif rng.random() < 0.5:
            make_image(victim, seed=1000 + kill)
        fault = rng.choice(CRASH_POINTS).format(k=rng.randrange(1, 6))
        env = {**os.environ, "CLIPSEARCH_FAULT": "" if kill % 2 else fault}
        env[marker.split("=")[0]] = marker.split("=")[1]
        proc = subprocess.Popen(
            [sys.executable, "-c", KILL_SCRIPT, str(store), str(photos)], env=env
        )
        try:
            proc.wait(timeout=rng.uniform(0.5, 4.0))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert wait_until_gone(marker) == []
    index(store, [photos], tiny)
    assert_whole(store, len(list(photos.iterdir())))


UNGUARDED_SCRIPT = """
from clipsearch.models.encoder import load_model
from clipsearch.indexing.indexer import IndexOptions, Indexer
from clipsearch.storage.store import Store
import sys
Indexer(Store(sys.argv[1]), load_model("random:tiny"), IndexOptions(workers=1)).run([sys.argv[2]])
"""


def test_workers_that_die_as_they_start_stop_the_run_without_blaming_files(tmp_path, photos):
    """Spawned workers import the main script: one without a __main__ guard starts a new
    indexing run in each worker, which dies. No file is at fault."""
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "store"), str(photos)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0 and "__main__" in proc.stderr
    files, _ = catalog_rows(tmp_path / "store")
    assert all(state == "ok" for _, state, _ in files)


def test_the_model_gets_the_cores_decoding_leaves():
    from clipsearch.indexing.cores import model_threads

    assert model_threads(decode_cpu=0.035, model_cpu=0.035, cores=2) == 1  # 12-MP JPEG, B/32
    assert model_threads(decode_cpu=0.002, model_cpu=0.031, cores=2) == 2  # small PNG
    assert model_threads(decode_cpu=0.036, model_cpu=0.096, cores=2) == 2  # JPEG, B/32 fp32
    assert model_threads(decode_cpu=0.1, model_cpu=0.001, cores=8) == 1  # never none
    assert model_threads(decode_cpu=0.001, model_cpu=0.003, cores=8) == 6
    assert model_threads(0.0, 0.0, cores=4) == 4


def test_the_core_share_follows_the_costs_it_is_given_and_gives_the_threads_back():
    """The thread rule applied as a run goes, on costs the test sets: the first batch is
    not counted (the model warms up), then the model's threads follow model_threads."""
    import torch

    from clipsearch.indexing.cores import CoreShare

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        decode = {"cost": 0.040}  # a 12-MP JPEG's decode per image
        share = CoreShare(lambda: decode["cost"])
        assert share.after_batch(4, model_cpu=10.0) == 2  # warming up: not counted
        assert share.after_batch(4, model_cpu=4 * 0.004) == 1  # the model 10x cheaper
        decode["cost"] = 0.0001  # small PNGs: decoding costs next to nothing
        assert share.after_batch(400, model_cpu=400 * 0.004) == 2
        share.close()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_run_gives_the_model_the_threads_the_rule_gives_for_its_decoding_cost(tmp_path, tiny):
    """A real run, its decoding cost set by the test (a second of CPU per image: far
    costlier than any model, on any CPU): torch's threads drop to one while the model
    embeds and come back after the run."""
    import torch

    from clipsearch.indexing.indexer import Indexer, IndexOptions
    from clipsearch.indexing.pool import DecodePool

    class CostlyDecoding(DecodePool):
        def cpu_per_image(self) -> float:
            return 1.0

    for i in range(24):
        make_image(tmp_path / "photos" / f"{i}.png", seed=i)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    seen = []
    try:
        with Store(tmp_path / "store") as store, CostlyDecoding(2) as pool:
            options = IndexOptions(workers=2, batch_size=4)
            progress = lambda done, total: seen.append(torch.get_num_threads())  # noqa: E731
            report = Indexer(store, tiny, options, pool).run([str(tmp_path / "photos")], progress)
        assert report.added == 24 and pool.images == 24
        # progress comes as each commit ends, the last one after the model is done
        assert seen[1:-1] == [1] * (len(seen) - 2) and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_decoding_runs_below_the_models_priority():
    """A model thread preempted by a decoder stalls its whole OpenMP region: decoders get
    the cycles the model leaves, at a lower CPU priority than the process that runs it."""
    from clipsearch.indexing.pool import DecodePool

    with DecodePool(1) as pool:
        worker = pool._pool.submit(os.getpriority, os.PRIO_PROCESS, 0).result()
    assert worker > os.getpriority(os.PRIO_PROCESS, 0) or worker == 19


def test_a_folder_that_cannot_be_listed_keeps_its_vectors(tmp_path, photos, tiny, monkeypatch):
    index(tmp_path / "store", [photos], tiny)
    sub = str(photos / "sub")
    monkeypatch.setenv("CLIPSEARCH_FAULT", f"list-folder:{sub}=deny")  # chmod 000, even for root
    report = index(tmp_path / "store", [photos], tiny)
    assert report.removed == 0 and report.unchanged == 6
    assert any(p.path == sub and "is kept" in p.reason for p in report.problems)
    monkeypatch.delenv("CLIPSEARCH_FAULT")
    again = index(tmp_path / "store", [photos], tiny)
    assert (again.added, again.unchanged, again.removed) == (0, 7, 0)  # nothing to embed again


def test_a_100_megapixel_jpeg_is_indexed_by_its_draft(tmp_path, tiny):
    gfx = tmp_path / "photos" / "gfx100.jpg"
    gfx.parent.mkdir()
    Image.new("L", (11_648, 8_736), 128).save(gfx, quality=50)  # a Fujifilm GFX100's size
    report = index(tmp_path / "store", [gfx.parent], tiny)
    assert (report.added, report.failed) == (1, 0), report.failures
    from clipsearch.images.decode import ImageError, open_image

    img, info = open_image(str(gfx), draft_size=224)
    assert (info.width, info.height) == (11_648, 8_736) and max(img.size) <= 11_648 // 4
    with pytest.raises(ImageError, match="decompression bomb"):  # a full decode would be too
        open_image(str(gfx))


def test_a_100_megapixel_jpeg_is_a_query_too(tmp_path, tiny):
    gfx = tmp_path / "gfx100.jpg"
    Image.new("L", (11_648, 8_736), 90).save(gfx, quality=50)
    assert tiny.encode_images([str(gfx)]).shape == (1, tiny.dim)


def test_a_folder_given_twice_through_a_link_is_indexed_once(tmp_path, photos, tiny):
    link = tmp_path / "link"
    link.symlink_to(photos)
    report = index(tmp_path / "store", [photos, link], tiny)
    assert report.added == 7
    said = [p.path for p in report.problems if "already given" in p.reason]
    assert len(said) == 1 and said[0] in (str(link), str(photos))


def test_a_stray_index_file_goes_with_the_next_run_that_changes_nothing(tmp_path, photos, tiny):
    store = tmp_path / "store"
    index(store, [photos], tiny)
    before = sorted(p.name for p in (store / "indexes").iterdir())
    (store / "indexes" / "model1-hnsw-99.faiss").write_bytes(b"left by a crash in rebuild")
    (store / "indexes" / "model1-exact-98.faiss.4242.tmp").write_bytes(b"half")
    report = index(store, [photos], tiny)
    assert report.added == report.updated == report.removed == 0
    assert sorted(p.name for p in (store / "indexes").iterdir()) == before


def test_a_file_refused_for_permission_is_retried_once_readable(
    tmp_path, photos, tiny, monkeypatch
):
    store = tmp_path / "store"
    monkeypatch.setenv("CLIPSEARCH_FAULT", f"decode:{photos / 'img2.png'}=deny")  # root too
    first = index(store, [photos], tiny)
    assert first.failed == 1 and first.failures[0][1] == "permission denied"
    monkeypatch.delenv("CLIPSEARCH_FAULT")  # as `chmod` mends it: size and mtime unchanged
    again = index(store, [photos], tiny)
    assert again.updated == 1 and again.failed == 0
    assert all(state == "ok" for _, state, _ in catalog_rows(store)[0])


def children_of(pid: int) -> list[int]:
    kids = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat_file.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(stat_file.parent.name))
    return kids


def test_ctrl_c_while_the_workers_start_is_one_line(tmp_path, photos):
    """As a terminal sends it: SIGINT to the whole process group, the moment the decoding
    processes exist (they are still importing their modules)."""
    args = [str(photos), "--store", str(tmp_path / "store"), "--workers", "2"]
    proc = subprocess.Popen(
        [*INDEX_CLI, *args], stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.time() + 60
    while time.time() < deadline and len(children_of(proc.pid)) < 2:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert proc.returncode in (0, 130)  # 0: it had finished already


NOOP_RUN = """
import resource, sys
from clipsearch import Library
from clipsearch.indexing.indexer import IndexOptions
if __name__ == "__main__":
    with Library(sys.argv[1], create=True, precision="fp32") as lib:
        report = lib.index([sys.argv[2]], sys.argv[3], IndexOptions(workers=1))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(report.added, report.unchanged, len(lib.loads), "torch" in sys.modules,
          children.ru_utime + children.ru_stime > 0)
"""


def test_an_unchanged_rerun_loads_no_model_and_starts_no_process(tmp_path, photos):
    """What a re-run costs is a scan: the model (torch itself) and the decoding processes
    are for runs that have something to embed."""
    folder = tmp_path / "model"
    from clipsearch import load_model

    load_model("random:tiny:3").save(str(folder))
    run = [sys.executable, "-c", NOOP_RUN, str(tmp_path / "store"), str(photos), str(folder)]
    first = subprocess.run(run, capture_output=True, text=True, check=True).stdout.split()
    assert first == ["7", "0", "1", "True", "True"]
    again = subprocess.run(run, capture_output=True, text=True, check=True).stdout.split()
    assert again == ["0", "7", "0", "False", "False"]
    make_image(photos / "new.png", seed=77)
    one_more = subprocess.run(run, capture_output=True, text=True, check=True).stdout.split()
    assert one_more == ["1", "7", "1", "True", "True"]


def test_a_model_saved_over_its_folder_is_loaded_again(tmp_path, photos):
    """The store knows a model's vectors without loading it only while the files it was
    read from are unchanged: other weights in the same folder are another model."""
    from clipsearch import Library, load_model
    from clipsearch.indexing.indexer import IndexOptions

    folder, store = tmp_path / "model", tmp_path / "store"
    load_model("random:tiny:1").save(str(folder))
    with Library(store, create=True, precision="fp32") as lib:
        lib.index([photos], str(folder), IndexOptions(workers=1))
    load_model("random:tiny:2").save(str(folder))
    with Library(store, precision="fp32") as lib:
        report = lib.index([photos], str(folder), IndexOptions(workers=1))
        assert report.added == 7 and len(lib.loads) == 1
        assert len(lib.catalog.models.with_vectors()) == 2
    with Library(store, precision="fp32") as lib:
        dry = lib.index([photos], str(folder), IndexOptions(dry_run=True))
        assert dry.planned["embed"] == 0 and lib.loads == []


def test_a_store_inside_a_root_is_not_indexed(tmp_path, photos, tiny):
    """Its thumbnails (what `serve` writes there) are no photos of the user's."""
    store = photos / "store"
    make_image(store / "thumbs" / "ab" / "thumb.jpg")
    report = index(store, [photos], tiny)
    assert report.added == 7
    assert not any("thumb" in path for path, _, _ in catalog_rows(store)[0])
