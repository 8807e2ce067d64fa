"""Text queries use int8 or fp16 weights only where the store shows they find what fp32
finds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import make_image
from typer.testing import CliRunner

from clipsearch import Library
from clipsearch.cli import app
from clipsearch.core.prompts import AGREEMENT_TARGET as MIN_AGREEMENT
from clipsearch.core.prompts import SEARCH_PROMPTS as PROBES
from clipsearch.models.encoder import TextPath, auto_precision, load_model
from clipsearch.query.precision import RECHECK_GROWTH, PrecisionChecks, Verdict, agreement
from clipsearch.query.search import QueryError
from clipsearch.storage import synthetic
from clipsearch.storage.catalog import Catalog
from clipsearch.storage.layout import PRECISION_CHECKS_FILE

MODEL = "random:tiny"
pytestmark = pytest.mark.usefixtures("cpu_kind")


def file_vectors(store, encoder, vectors: np.ndarray) -> None:
    """Vectors filed under the encoder's weights, as if images had been indexed."""
    catalog = Catalog(f"sqlite:///{store / 'catalog.db'}")
    model = (encoder.name, encoder.architecture, encoder.digest, encoder.dim)
    synthetic.file_vectors(catalog, vectors, model, lambda i: f"/p/{i}.jpg")
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
        lib.search("a blue circle", k=5, model=MODEL)
        assert lib.query_encoder(MODEL, text_only=True).precision == "int8"
        hits = lib.search("a red square", k=5, model=MODEL).results
        check = lib.status().models[0].query_precision
    assert check.uses == "int8" and check.vectors == 40
    assert list(check.agreement) == ["int8"]  # the fastest passed: nothing more to check
    assert check.agreement["int8"] >= MIN_AGREEMENT
    shown = CliRunner().invoke(app, ["status", "--store", str(store)], env={"COLUMNS": "200"})
    assert f"int8 (same top-10: int8 {check.agreement['int8']:.0%})" in shown.output
    with Library(store, precision="fp32") as lib:
        exact = lib.search("a red square", k=5, model=MODEL).results
    assert hits[0].path == exact[0].path
    assert len({r.path for r in hits} & {r.path for r in exact}) >= 4
    assert abs(hits[0].score - exact[0].score) < 0.01


def test_an_image_term_loads_the_whole_model_once_and_text_queries_keep_it(tmp_path):
    store = indexed_store(tmp_path, 12)
    photo = str(tmp_path / "photos" / "03.png")
    with Library(store) as lib:
        lib.search("a red square", k=3, model=MODEL)
        assert lib.query_encoder(MODEL, text_only=True).precision == "int8"
        by_image = lib.search([], k=1, images=[photo], model=MODEL).results
        whole = lib.query_encoder(MODEL, text_only=True)
        assert not whole.text_only and whole.precision == auto_precision(torch.device("cpu"))
        assert lib.search("a red square", k=3, model=MODEL).results
        assert lib.query_encoder(MODEL, text_only=True) is whole
    assert by_image[0].path == photo


def test_the_first_text_query_runs_in_fp32_and_checks_nothing(tmp_path):
    """A one-query process (the CLI) is answered by the fp32 tower it loaded to learn the
    digest: a faster one would cost more to prepare than it saves."""
    store = indexed_store(tmp_path, 12)
    with Library(store) as lib:
        answer = lib.search("a red square", k=3, model=MODEL)
        assert answer.results and lib.encoder(MODEL, text_only=True).precision == "fp32"
    assert lib.loads == [(MODEL, "fp32", True)]
    assert not (store / PRECISION_CHECKS_FILE).exists()
    shown = CliRunner().invoke(app, ["query", "a dog", "--store", str(store), "--model", MODEL])
    assert shown.exit_code == 0 and not (store / PRECISION_CHECKS_FILE).exists()


def crowded_store(folder, noise: float):
    """Each probe has 30 stored vectors around its own fp32 vector, `noise` apart: closer
    than a precision's rounding, and their order is noise to it."""
    fp32 = load_model(MODEL)
    rng = np.random.default_rng(0)
    crowd = np.repeat(fp32.encode_text(PROBES), 30, axis=0)
    crowd += noise * rng.standard_normal(crowd.shape)
    crowd /= np.linalg.norm(crowd, axis=1, keepdims=True)
    store = folder / "store"
    store.mkdir()
    file_vectors(store, fp32, crowd)
    return store, fp32.digest, len(crowd)


def test_fp16_weights_where_int8_reorders_a_crowded_store(tmp_path):
    """int8 moves the tiny model's vectors by 1 - cosine ~1e-3, fp16 weights by ~1e-7."""
    store, digest, n = crowded_store(tmp_path, noise=2e-3)
    with Library(store) as lib:
        lib.search("a dog", k=5, model=MODEL)
        assert lib.query_encoder(MODEL, text_only=True).precision == "fp16"
    check = json.loads((store / PRECISION_CHECKS_FILE).read_text())[digest]
    assert check["vectors"] == n and list(check["agreement"]) == ["int8", "fp16"]
    assert check["agreement"]["int8"] < MIN_AGREEMENT <= check["agreement"]["fp16"]
    with Library(store) as lib:  # remembered: no second check, no int8 model loaded
        assert lib.search("a dog", k=5, model=MODEL).results
        fp16 = lib.query_encoder(MODEL, text_only=True)
        assert fp16.precision == "fp16"
        assert fp16.text_path is TextPath.TRACED  # traced at the switch, not one query later
    assert lib.loads == [(MODEL, "fp32", True), (MODEL, "fp16", True)]


def test_fp32_is_kept_where_every_faster_precision_reorders_the_store(tmp_path):
    store, digest, _ = crowded_store(tmp_path, noise=1e-4)
    with Library(store) as lib:
        lib.search("a dog", k=5, model=MODEL)
        assert lib.query_encoder(MODEL, text_only=True).precision == "fp32"
        check = lib.status().models[0].query_precision
    assert check.uses == "fp32" and max(check.agreement.values()) < MIN_AGREEMENT
    with Library(store) as lib:
        assert lib.search("a dog", k=5, model=MODEL).results
        assert lib.query_encoder(MODEL, text_only=True).precision == "fp32"
    assert lib.loads == [(MODEL, "fp32", True)]


def test_a_precision_this_torch_could_not_check_is_checked_where_it_can(tmp_path, monkeypatch):
    """A store checked by a torch with int8 kernels only (ARM's qnnpack, say) and opened
    where fp16 weights run too checks fp16 then."""
    from clipsearch.models import encoder

    store, digest, _ = crowded_store(tmp_path, noise=2e-3)
    with monkeypatch.context() as patch:
        patch.setattr(encoder, "reduced_precisions", lambda: ("int8",))
        with Library(store) as lib:
            lib.search("a dog", k=5, model=MODEL)
            assert lib.query_encoder(MODEL, text_only=True).precision == "fp32"
    assert list(PrecisionChecks(store / PRECISION_CHECKS_FILE).get(digest, 1)) == ["int8"]
    with Library(store) as lib:
        lib.search("a dog", k=5, model=MODEL)
        assert lib.query_encoder(MODEL, text_only=True).precision == "fp16"
    assert list(PrecisionChecks(store / PRECISION_CHECKS_FILE).get(digest, 1)) == [
        "int8",
        "fp16",
    ]


def test_explicit_precision_is_never_second_guessed(tmp_path):
    store = indexed_store(tmp_path, 3)
    with Library(store, precision="fp32") as lib:
        lib.search("a dog", k=2, model=MODEL)
        assert lib.query_encoder(MODEL, text_only=True).precision == "fp32"
    assert not (store / PRECISION_CHECKS_FILE).exists()


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
    from clipsearch.models import encoder

    monkeypatch.setattr(encoder, "reduced_precisions", lambda: ())
    store = indexed_store(tmp_path, 3)
    with Library(store) as lib:
        assert lib.search("a dog", k=2, model=MODEL).results
        assert lib.query_encoder(MODEL, text_only=True).precision == "fp32"
    assert not (store / PRECISION_CHECKS_FILE).exists()


def test_agreement_of_an_encoder_with_itself_is_total():
    encoder = load_model(MODEL)
    vectors = np.random.default_rng(0).standard_normal((200, encoder.dim))

    def top_ids(v: np.ndarray) -> list[int]:
        return np.argsort(-(vectors @ v))[:10].tolist()

    assert agreement(encoder, encoder, top_ids) == 1.0
    assert agreement(encoder, load_model("random:tiny:1"), top_ids) < 0.5


def test_verdicts_are_checked_again_when_the_store_grows(tmp_path):
    checks = PrecisionChecks(tmp_path / "checks.json")
    assert checks.get("abc", 10) is None
    checks.put("abc", 1000, {"int8": 0.9, "fp16": 0.99})
    assert checks.get("abc", 1000) == {"int8": 0.9, "fp16": 0.99}
    assert checks.get("abc", RECHECK_GROWTH * 1000 - 1) == {"int8": 0.9, "fp16": 0.99}
    assert checks.get("abc", RECHECK_GROWTH * 1000) is None
    assert checks.verdicts() == {"abc": Verdict(1000, {"int8": 0.9, "fp16": 0.99}, "fp16")}
    (tmp_path / "checks.json").write_text('{"abc": "damaged", "def": {"vectors": 5}}')
    assert checks.get("abc", 1000) is None and checks.verdicts() == {}
