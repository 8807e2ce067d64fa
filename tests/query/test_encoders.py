"""Which tower reads a query's words: for a Library's first text query, the model's text
tower exported for ONNX Runtime where the user's cache (or an older store) has one (then
no torch is imported at all), else torch; a damaged or hostile tower is passed over, and
said so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import make_image

from clipsearch import Library
from clipsearch.core.memo import user_cache
from clipsearch.models import onnx_proto, onnx_text
from clipsearch.models.encoder import load_model

pytest.importorskip("onnxruntime", reason="the fast extra (onnxruntime) is not installed")

QUERY = "a red square on a white table"
# A fresh interpreter that asks one query, as `clipsearch query` does, and tells what read it.
ASK = textwrap.dedent(
    """
    import json, sys, warnings
    from clipsearch import Library
    with warnings.catch_warnings(record=True) as caught, Library(sys.argv[1]) as lib:
        warnings.simplefilter("always")
        answer = lib.search(sys.argv[2], k=5, mode="vector")
        reader = "torch" if lib.loads else "onnx"  # the models torch loaded, if any
    print(json.dumps({
        "reader": reader, "torch": "torch" in sys.modules, "model": answer.model,
        "ids": [r.file_id for r in answer.results], "scores": [r.score for r in answer.results],
        "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
    }))
    """
)


@pytest.fixture
def store(tmp_path):
    """A store indexed with a model saved to disk (random weights)."""
    load_model("random:tiny:7").save(str(tmp_path / "model"))
    for i in range(8):
        make_image(tmp_path / "photos" / f"{i}.png", seed=i)
    with Library(tmp_path / "store", create=True) as lib:
        lib.index([tmp_path / "photos"], model=str(tmp_path / "model"))
    return tmp_path / "store"


def ask(store, query: str = QUERY, env: dict[str, str] | None = None) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", ASK, str(store), query],
        capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def exported(store) -> Path:
    with Library(store) as lib:
        folder = lib.export_text_tower()
    assert folder is not None and folder.parent == user_cache() / onnx_text.FOLDER
    return folder


def test_an_exported_tower_answers_text_queries_without_torch(store):
    by_torch = ask(store)
    assert (by_torch["reader"], by_torch["torch"]) == ("torch", True)
    folder = exported(store)
    made = (folder / onnx_text.GRAPH).stat().st_mtime_ns
    assert exported(store) == folder  # once per model: the second call finds it
    assert (folder / onnx_text.GRAPH).stat().st_mtime_ns == made
    by_onnx = ask(store)
    assert (by_onnx["reader"], by_onnx["torch"]) == ("onnx", False)
    assert by_onnx["warnings"] == []
    assert (by_onnx["ids"], by_onnx["model"]) == (by_torch["ids"], by_torch["model"])
    np.testing.assert_allclose(by_onnx["scores"], by_torch["scores"], atol=1e-5)


def test_a_new_store_with_the_same_model_reads_the_tower_made_for_the_first(store, tmp_path):
    folder = exported(store)
    made = (folder / onnx_text.GRAPH).stat().st_mtime_ns
    with Library(tmp_path / "second", create=True) as lib:
        lib.index([tmp_path / "photos"], model=str(tmp_path / "model"))
        assert lib.export_text_tower(load=False) == folder  # as the CLI asks after `index`
    assert (folder / onnx_text.GRAPH).stat().st_mtime_ns == made  # found, not made again
    assert folder.parent.stat().st_mode & 0o777 == 0o700  # the user's alone
    answer = ask(tmp_path / "second")
    assert (answer["reader"], answer["torch"]) == ("onnx", False)
    assert answer["ids"] == ask(store, env={"CLIPSEARCH_NO_ONNX": "1"})["ids"]


def test_a_tower_an_older_clipsearch_kept_in_the_store_is_read_there(store):
    folder = exported(store)
    in_store = store / onnx_text.FOLDER / folder.name
    in_store.parent.mkdir()
    folder.rename(in_store)
    assert exported_anywhere(store) == in_store
    assert ask(store)["reader"] == "onnx" and not folder.exists()


def exported_anywhere(store) -> Path | None:
    with Library(store) as lib:
        return lib.export_text_tower()


def test_no_export_where_the_users_cache_cannot_be_written(store, monkeypatch, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("CLIPSEARCH_CACHE", str(tmp_path / "a-file"))
    assert exported_anywhere(store) is None
    assert ask(store)["reader"] == "torch"


def test_the_users_cache_keeps_the_most_recently_used_towers(tmp_path):
    towers = tmp_path / onnx_text.FOLDER
    digests = [f"{i:016x}" for i in range(onnx_text.KEPT + 2)]
    for age, digest in enumerate(digests):
        (towers / digest).mkdir(parents=True)
        os.utime(towers / digest, (1000 + age, 1000 + age))
    (towers / "not-a-digest").mkdir()
    onnx_text.used(towers / digests[0])  # the oldest, used just now
    onnx_text.prune(towers)
    kept = sorted(p.name for p in towers.iterdir())
    assert kept == sorted([digests[0], *digests[-(onnx_text.KEPT - 1) :], "not-a-digest"])


def test_torch_reads_after_the_first_query_or_where_it_is_loaded_or_asked(store):
    exported(store)
    with Library(store) as lib:
        assert type(lib.text_reader()).__name__ == "OnnxTextTower"
        assert type(lib.text_reader()).__name__ == "Encoder"  # a second query: resident
    with Library(store) as lib:
        lib.encoder()  # an image query, say: the whole model in torch
        assert type(lib.text_reader()).__name__ == "Encoder"
    with Library(store, precision="int8") as lib:
        assert type(lib.text_reader()).__name__ == "Encoder"
    assert ask(store, env={"CLIPSEARCH_NO_ONNX": "1"})["reader"] == "torch"  # turned off


def garbage_graph(folder: Path) -> None:
    (folder / onnx_text.GRAPH).write_bytes(b"not a graph")


def weights_a_link(folder: Path) -> None:
    """A link to another file of the store's (to any file, in a store from elsewhere)."""
    (folder / onnx_text.WEIGHTS).unlink()
    (folder / onnx_text.WEIGHTS).symlink_to(folder.parent.parent / "catalog.db")


@pytest.mark.parametrize("damage", [garbage_graph, weights_a_link])
def test_a_damaged_tower_is_passed_over_and_said_so(store, damage):
    before = ask(store)
    folder = exported(store)
    damage(folder)
    after = ask(store)
    assert (after["reader"], after["ids"]) == ("torch", before["ids"])
    (warning,) = [w for w in after["warnings"] if w.startswith("FallbackWarning")]
    assert str(folder) in warning and "Delete that folder" in warning


def test_a_tower_that_reads_outside_its_folder_is_refused(store):
    """A store from someone else may hold a graph whose weights are any file: ONNX
    Runtime refuses external data outside the graph's folder, and torch answers."""
    folder = exported(store)
    where = {"location": "../../catalog.db", "offset": "0", "length": "16"}
    graph = onnx_proto.model(
        [onnx_proto.node("Add", ["tokens", "w"], ["vectors"])],
        [onnx_proto.external_tensor("w", (4,), where)],
        [onnx_proto.value_info("tokens", onnx_proto.FLOAT, ["4"])],
        [onnx_proto.value_info("vectors", onnx_proto.FLOAT, ["4"])],
        "hostile", 18, 8,
    )  # fmt: skip
    (folder / onnx_text.GRAPH).write_bytes(graph)
    after = ask(store)
    assert after["reader"] == "torch" and len(after["ids"]) == 5
    assert any("escapes" in w or "External data" in w for w in after["warnings"])


def test_a_model_saved_over_is_read_by_torch_not_by_its_old_tower(store, tmp_path):
    exported(store)
    load_model("random:tiny:8").save(str(tmp_path / "model"))  # other weights, same folder
    with Library(store) as lib:
        reader = lib.text_reader(str(tmp_path / "model"))
    assert type(reader).__name__ == "Encoder"


def test_random_weights_are_not_exported_nor_loaded_again_to_try(tmp_path):
    for i in range(3):
        make_image(tmp_path / "photos" / f"{i}.png", seed=i)
    with Library(tmp_path / "store", create=True) as lib:
        lib.index([tmp_path / "photos"], model="random:tiny")
        lib.search(QUERY, k=3)
        loads = list(lib.loads)
        assert lib.export_text_tower(load=False) is None
        assert lib.loads == loads  # the CLI asks after every query: no second load
    assert not (tmp_path / "store" / onnx_text.FOLDER).exists()
    assert not (user_cache() / onnx_text.FOLDER).exists()
