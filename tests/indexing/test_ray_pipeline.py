"""`clipsearch index --ray` on a real local Ray instance: the same catalog as the local
pipeline, nothing lost or duplicated when the driver or a model actor is killed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import make_image

from clipsearch import Library
from clipsearch.core.faults import VARIABLE
from clipsearch.indexing.indexer import IndexOptions
from clipsearch.storage.catalog import Catalog

ray = pytest.importorskip("ray", reason='Ray is not installed (pip install "clipsearch[ray]")')

SLOW = "decode:slow=sleep:0.3"  # files named slow* decode slowly on the workers


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance of 2 CPUs; its workers sleep on files named slow*."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=300 * 2**20,
        runtime_env={"env_vars": {VARIABLE: SLOW}},
    )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def folder(path: Path, n: int, prefix: str = "img") -> Path:
    for i in range(n):
        make_image(path / f"{prefix}{i:02d}.png", seed=i, size=(40 + i, 36))
    return path


def catalog_of(store: Path) -> tuple[list, dict]:
    db = sqlite3.connect(store / "catalog.db")
    rows = db.execute(
        "select path, state, error, width, height, format from files order by path"
    ).fetchall()
    db.close()
    catalog = Catalog(f"sqlite:///{store / 'catalog.db'}")
    (model, _), *_ = catalog.models.counted()
    ids, vecs = catalog.vectors.get(model.id)
    paths = {f.id: f.path for f in catalog.files.rows(ids.tolist()).values()}
    catalog.close()
    return rows, {paths[i]: v for i, v in zip(ids.tolist(), vecs)}


def index(store: Path, photos: Path, **options):
    with Library(store, create=True, precision="fp32") as lib:
        return lib.index([photos], "random:tiny", IndexOptions(batch_size=4, **options))


def test_the_ray_pipeline_writes_what_the_local_one_writes(tmp_path, cluster):
    photos = folder(tmp_path / "photos", 10)
    (photos / "broken.png").write_bytes(b"\x89PNG not really")
    local = index(tmp_path / "local", photos, workers=1)
    on_ray = index(tmp_path / "ray", photos, ray=True)
    assert (on_ray.added, on_ray.failed) == (local.added, local.failed) == (10, 1)
    rows, vectors = catalog_of(tmp_path / "ray")
    expected_rows, expected = catalog_of(tmp_path / "local")
    assert rows == expected_rows
    assert any(r[1] == "failed" and "not an image" in r[2] for r in rows)
    assert vectors.keys() == expected.keys()
    for path, vector in vectors.items():
        np.testing.assert_allclose(vector, expected[path], atol=1e-5)


def test_a_driver_killed_mid_run_loses_and_repeats_nothing(tmp_path, cluster):
    photos = folder(tmp_path / "photos", 16)
    command = [sys.executable, "-m", "clipsearch", "index", str(photos), "-m", "random:tiny"]
    command += ["--store", str(tmp_path / "s"), "--ray", "--ray-address", cluster]
    command += ["--batch-size", "4", "--foreground"]
    killed = subprocess.run(
        command, env={**os.environ, VARIABLE: "batch-committed:batch 2.=kill"}, capture_output=True
    )
    assert killed.returncode == -signal.SIGKILL
    rows, _ = catalog_of(tmp_path / "s")
    assert 0 < len(rows) < 16 and len(rows) % 4 == 0  # whole batches only
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    rows, vectors = catalog_of(tmp_path / "s")
    assert [r[0] for r in rows] == sorted(str(p) for p in photos.iterdir())
    assert len(vectors) == 16


def embedder_processes() -> list[int]:
    """Ray's model actors, by the process title Ray gives them."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"MapBatches(Embedder)" in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_a_model_actor_killed_mid_run_has_its_batch_retried(tmp_path, cluster):
    photos = folder(tmp_path / "photos", 24, prefix="slow")
    store = tmp_path / "s"
    killed: list[int] = []

    def kill_an_actor_once_a_batch_is_in():
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            committed = 0
            if (store / "catalog.db").exists():
                try:
                    db = sqlite3.connect(store / "catalog.db")
                    committed = db.execute("select count(*) from files").fetchone()[0]
                    db.close()
                except sqlite3.OperationalError:
                    pass
            actors = embedder_processes()
            if committed and actors:
                os.kill(actors[0], signal.SIGKILL)
                killed.append(actors[0])
            time.sleep(0.1)

    killer = threading.Thread(target=kill_an_actor_once_a_batch_is_in)
    killer.start()
    report = index(store, photos, ray=True)
    killer.join()
    assert killed, "the run ended before an actor could be killed"
    rows, vectors = catalog_of(store)
    assert report.added == 24 and report.failed == 0
    assert [r[0] for r in rows] == sorted(str(p) for p in photos.iterdir())
    assert len(vectors) == 24


def test_without_ray_a_clear_line_says_what_to_install(tmp_path, monkeypatch):
    from clipsearch.core.errors import ClipsearchError
    from clipsearch.indexing import ray_pipeline

    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    with pytest.raises(ClipsearchError, match=r'pip install "clipsearch\[ray\]"'):
        ray_pipeline.connect(None)


def test_actors_that_load_another_model_stop_the_run_with_one_line(tmp_path, cluster):
    from clipsearch.indexing import ray_pipeline
    from clipsearch.models.encoder import load_model

    photos = folder(tmp_path / "photos", 2)
    items = [(str(p), (p.stat().st_size, p.stat().st_mtime_ns)) for p in photos.iterdir()]
    prep = load_model("random:tiny").preprocessing
    wrong = ray_pipeline.Embedding("random:tiny", "fp32", "not its digest")
    with pytest.raises(ray_pipeline.RayRunError) as stopped:
        list(ray_pipeline.run(items, prep, wrong, 2))
    assert "loads differently" in str(stopped.value) and "\n" not in str(stopped.value)
