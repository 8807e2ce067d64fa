"""Text queries use int8 only where the store shows it finds what fp32 finds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_image
from sqlalchemy import insert
from typer.testing import CliRunner

from clipsearch import Library
from clipsearch.catalog import Catalog, File
from clipsearch.cli import app
from clipsearch.encoder import load_model
from clipsearch.int8_check import MIN_AGREEMENT, PROBES, RECHECK_GROWTH, Int8Checks, agreement
from clipsearch.search import QueryError
from clipsearch.store import INT8_CHECKS_FILE

MODEL = "random:tiny"


def file_vectors(store, encoder, vectors: np.ndarray) -> None:
    """Vectors filed under the encoder's weights, as if images had been indexed."""
    catalog = Catalog(f"sqlite:///{store / 'catalog.db'}")
    model = catalog.model_row(encoder.name, encoder.architecture, encoder.digest, encoder.dim)
    ids = list(range(1, len(vectors) + 1))
    rows = [dict(id=i, path=f"/p/{i}.jpg", size=1, mtime_ns=1, state="ok") for i in ids]
    with catalog.session() as s, s.begin():
        s.execute(insert(File), rows)
        Catalog.add_vectors(s, model.id, ids, vectors.astype(np.float32))
    catalog.close()


def indexed_store(folder, images: int):
    for i in range(images):
        make_image(folder / "photos" / f"{i:02d}.png", seed=i)
    with Library(folder / "store", create=True) as lib:
        lib.index([folder / "photos"], model=MODEL)
    return folder / "store"


def test_int8_is_used_where_it_agrees_and_the_verdict_is_kept(tmp_path):
    store = indexed_store(tmp_path, 40)
    with Library(store) as lib:
        hits = lib.search("a red square", k=5, model=MODEL).results
        encoder = lib.query_encoder(MODEL, text_only=True)
        assert encoder.precision == "int8"
        check = lib.status()["models"][0]["int8_check"]
    assert check["int8"] and check["agreement"] >= MIN_AGREEMENT and check["vectors"] == 40
    shown = CliRunner().invoke(app, ["status", "--store", str(store)], env={"COLUMNS": "200"})
    assert f"int8 ({check['agreement']:.0%} same top-10)" in shown.output
    with Library(store, precision="fp32") as lib:
        exact = lib.search("a red square", k=5, model=MODEL).results
    assert hits[0].path == exact[0].path
    assert len({r.path for r in hits} & {r.path for r in exact}) >= 4
    assert abs(hits[0].score - exact[0].score) < 0.01


def test_an_image_term_loads_the_whole_model_once_and_text_queries_keep_it(tmp_path):
    store = indexed_store(tmp_path, 12)
    photo = str(tmp_path / "photos" / "03.png")
    with Library(store) as lib:
        assert lib.query_encoder(MODEL, text_only=True).precision == "int8"
        lib.search("a red square", k=3, model=MODEL)
        by_image = lib.search([], k=1, images=[photo], model=MODEL).results
        whole = lib.query_encoder(MODEL, text_only=True)
        assert not whole.text_only and whole.precision == "fp32"
        assert lib.search("a red square", k=3, model=MODEL).results
        assert lib.query_encoder(MODEL, text_only=True) is whole
    assert by_image[0].path == photo


def test_fp32_is_kept_where_int8_reorders_a_crowded_store(tmp_path):
    """Each probe has 30 stored vectors around its own fp32 vector, closer together than
    int8's rounding: their order is noise to int8, so the check must refuse it."""
    fp32 = load_model(MODEL)
    rng = np.random.default_rng(0)
    crowd = np.repeat(fp32.encode_text(PROBES), 30, axis=0)
    crowd += 2e-3 * rng.standard_normal(crowd.shape)
    crowd /= np.linalg.norm(crowd, axis=1, keepdims=True)
    store = tmp_path / "store"
    with Library(store, create=True):
        pass
    file_vectors(store, fp32, crowd)
    with Library(store) as lib:
        lib.search("a dog", k=5, model=MODEL)
        assert lib.query_encoder(MODEL, text_only=True).precision == "fp32"
    check = json.loads((store / INT8_CHECKS_FILE).read_text())[fp32.digest]
    assert check == {"agreement": pytest.approx(check["agreement"]), "vectors": len(crowd)}
    assert check["agreement"] < MIN_AGREEMENT
    with Library(store) as lib:  # remembered: no second check, no int8 model loaded
        loads, load = [], lib._load
        lib._load = lambda *args: loads.append(args) or load(*args)
        assert lib.search("a dog", k=5, model=MODEL).results
        assert lib.query_encoder(MODEL, text_only=True).precision == "fp32"
    assert loads == [(MODEL, "auto", True)]


def test_explicit_precision_is_never_second_guessed(tmp_path):
    store = indexed_store(tmp_path, 3)
    with Library(store, precision="fp32") as lib:
        lib.search("a dog", k=2, model=MODEL)
        assert lib.query_encoder(MODEL, text_only=True).precision == "fp32"
    assert not (store / INT8_CHECKS_FILE).exists()


def test_a_model_indexed_after_a_failed_query_is_still_checked(tmp_path):
    store = indexed_store(tmp_path, 12)
    other = "random:tiny:1"
    with Library(store) as lib:
        with pytest.raises(QueryError, match="no vectors from model"):
            lib.search("a dog", k=2, model=other)
        with Library(store) as indexer:  # another process, say
            indexer.index([tmp_path / "photos"], model=other)
        assert lib.search("a dog", k=2, model=other).results
        assert lib.query_encoder(other, text_only=True).precision == "int8"


def test_a_torch_without_quantised_engines_stays_in_fp32(tmp_path, monkeypatch):
    import clipsearch.encoder

    monkeypatch.setattr(clipsearch.encoder, "int8_supported", lambda: False)
    store = indexed_store(tmp_path, 3)
    with Library(store) as lib:
        assert lib.search("a dog", k=2, model=MODEL).results
        assert lib.query_encoder(MODEL, text_only=True).precision == "fp32"
    assert not (store / INT8_CHECKS_FILE).exists()


def test_agreement_of_an_encoder_with_itself_is_total():
    encoder = load_model(MODEL)
    vectors = np.random.default_rng(0).standard_normal((200, encoder.dim))

    def top_ids(v: np.ndarray) -> list[int]:
        return np.argsort(-(vectors @ v))[:10].tolist()

    assert agreement(encoder, encoder, top_ids) == 1.0
    assert agreement(encoder, load_model("random:tiny:1"), top_ids) < 0.5


def test_verdicts_are_checked_again_when_the_store_grows(tmp_path):
    checks = Int8Checks(tmp_path / "checks.json")
    assert checks.get("abc", 10) is None
    checks.put("abc", 1000, 0.97)
    assert checks.get("abc", 1000) == 0.97
    assert checks.get("abc", RECHECK_GROWTH * 1000 - 1) == 0.97
    assert checks.get("abc", RECHECK_GROWTH * 1000) is None
    assert checks.verdicts() == {"abc": {"agreement": 0.97, "vectors": 1000, "int8": True}}
    (tmp_path / "checks.json").write_text('{"abc": "damaged"}')
    assert checks.get("abc", 1000) is None and checks.verdicts() == {}
