"""Vector indexes tuned on queries that represent the store reach the recall target on
the queries people type, not only on generic prompts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import EMOJI, make_image
from typer.testing import CliRunner

from clipsearch import Library
from clipsearch.cli import app
from clipsearch.core.prompts import AGREEMENT_TARGET
from clipsearch.storage import synthetic, tuning
from clipsearch.storage.catalog import Catalog
from clipsearch.storage.exact import ground_truth
from clipsearch.storage.query_log import KEEP, QueryLog
from clipsearch.storage.vector_indexes import VectorIndexes

DIM = 64


@pytest.fixture(scope="module")
def gap_store(tmp_path_factory):
    """A store like a domain model's: generic prompts all land near one of 200 clusters,
    while the queries people type ask for every cluster, from across the modality gap
    (a constant offset between text and image vectors)."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((200, DIM))
    gap = rng.standard_normal(DIM)
    images = synthetic.unit(
        centres[rng.integers(0, 200, 20_000)] + 0.5 * rng.standard_normal((20_000, DIM))
    )
    prompts = synthetic.unit(centres[0] + gap + 0.3 * rng.standard_normal((48, DIM)))
    typed = synthetic.unit(
        centres[rng.integers(0, 200, 300)] + gap + 0.5 * rng.standard_normal((300, DIM))
    )
    folder = tmp_path_factory.mktemp("gap")
    catalog = Catalog(f"sqlite:///{folder / 'c.db'}")
    model_id = synthetic.file_vectors(catalog, images, ("domain", "vit", "gap", DIM))
    truth = ground_truth(catalog, model_id, typed, 10)
    return folder, catalog, model_id, prompts, typed, truth


@pytest.mark.parametrize("preset", ["ivf-flat", "hnsw", "ivf-pq"])
def test_tuned_on_representative_sets_typed_queries_reach_the_target(gap_store, preset, capfd):
    """And FAISS's training, which warns on stderr of too few points, says nothing."""
    folder, catalog, model_id, prompts, typed, truth = gap_store
    loaded = VectorIndexes(catalog, folder / preset).build(model_id, preset, prompts)
    assert tuning.recall(loaded, typed, truth) >= AGREEMENT_TARGET
    assert set(loaded.recall.sets) == {"images", "prompts", "across the gap"}
    assert not loaded.recall.below
    assert "WARNING" not in capfd.readouterr().err


def test_tuned_on_generic_prompts_alone_typed_queries_fall_short(gap_store):
    """What the tuner did before: the prompts ask for one cluster, a probe or two is
    enough for them, and the queries people type lose recall."""
    folder, catalog, model_id, prompts, typed, truth = gap_store
    loaded = VectorIndexes(catalog, folder / "old").build(model_id, "ivf-flat", prompts)
    prompts_only = tuning.tune(catalog, loaded, {"prompts": prompts}, margin=0)
    assert tuning.recall(loaded.with_params(prompts_only.params), typed, truth) < 0.93
    assert prompts_only.params["nprobe"] < loaded.params["nprobe"]


def test_logged_queries_are_a_tuning_set_of_their_own(gap_store, tmp_path):
    folder, catalog, model_id, prompts, typed, truth = gap_store
    log = QueryLog(tmp_path)
    for vector in typed[:100]:
        log.add("gap", vector)
    loaded = VectorIndexes(catalog, tmp_path / "ix", log).build(model_id, "ivf-flat", prompts)
    assert loaded.recall.sets["queries"] >= AGREEMENT_TARGET
    assert tuning.recall(loaded, typed[100:], truth[100:]) >= AGREEMENT_TARGET  # unseen ones


def test_the_query_log_keeps_vectors_only_and_the_last_few(tmp_path):
    log = QueryLog(tmp_path)
    vectors = synthetic.clustered(3 * KEEP, DIM)
    for v in vectors:
        log.add("d", v)
    kept = log.recent("d", DIM)
    assert np.array_equal(kept, vectors[-KEEP:])
    assert (tmp_path / "query-log" / "d.f32").stat().st_size <= 2 * KEEP * DIM * 4
    with open(tmp_path / "query-log" / "d.f32", "ab") as f:
        f.write(b"\x00\x01")  # a torn record, from a crash mid-write
    assert len(log.recent("d", DIM)) == KEEP


def test_text_queries_are_logged_unless_asked_not_to(tmp_path, monkeypatch):
    for i in range(4):
        make_image(tmp_path / "p" / f"{i}.png", seed=i)
    with Library(tmp_path / "s", create=True) as lib:
        lib.index([tmp_path / "p"], model="random:tiny")
        lib.search("a red square", k=2)
        lib.similar(str(tmp_path / "p" / "0.png"), k=2)  # no text: nothing to tune for
        digest = lib.encoder().digest
    assert len(QueryLog(tmp_path / "s").recent(digest, DIM)) == 1
    assert b"red" not in (tmp_path / "s" / "query-log" / f"{digest}.f32").read_bytes()
    store = ["--store", str(tmp_path / "s")]
    assert CliRunner().invoke(app, ["query", "a dog", *store, "--no-query-log"]).exit_code == 0
    monkeypatch.setenv("CLIPSEARCH_QUERY_LOG", "0")
    assert CliRunner().invoke(app, ["query", "a cat", *store]).exit_code == 0
    assert len(QueryLog(tmp_path / "s").recent(digest, DIM)) == 1


def test_rebuild_check_reports_recall_per_set_and_status_shows_it(tmp_path):
    for i in range(40):
        make_image(tmp_path / "p" / f"{i}.png", seed=i)
    store = ["--store", str(tmp_path / "s")]
    runner = CliRunner()
    index = ["index", str(tmp_path / "p"), "-m", "random:tiny", "--preset", "hnsw", *store]
    assert runner.invoke(app, index).exit_code == 0
    shown = runner.invoke(app, ["rebuild", "--check", *store])
    assert "recall@10 images" in shown.stdout and "measured 20" in shown.stdout
    checked = runner.invoke(app, ["rebuild", "--check", "--json", *store])
    assert checked.exit_code == 0, checked.output
    (report,) = json.loads(checked.stdout)
    assert report["preset"] == "hnsw" and report["recall"]["target"] == AGREEMENT_TARGET
    assert set(report["recall"]["sets"]) == {"images", "prompts", "across the gap"}
    status = runner.invoke(app, ["status", "--json", *store])
    recall = json.loads(status.stdout)["models"][0]["index"]["recall"]
    assert recall["measured_at"] == report["recall"]["measured_at"]


def test_an_index_is_tuned_again_when_logged_queries_find_it_below_target(gap_store, tmp_path):
    """At `index` time (a writer), queries logged since the last measurement are checked
    against exact search; below target, the search parameter is chosen again."""
    folder, catalog, model_id, prompts, typed, truth = gap_store
    log = QueryLog(tmp_path)
    indexes = VectorIndexes(catalog, tmp_path / "ix", log)
    loaded = indexes.build(model_id, "ivf-flat", prompts)
    too_few = tuning.tune(catalog, loaded, {"prompts": prompts}, margin=0)
    indexes.save(loaded.with_params(too_few.params))  # as the old tuner left it
    indexes.catalog.indexes.record_recall(
        model_id, json.dumps({**too_few.to_dict(), "measured_at": ""})
    )
    for vector in typed[:100]:
        log.add("gap", vector)
    synced, action = indexes.sync(model_id, "ivf-flat", prompts)
    assert action == "retuned" and not synced.recall.below
    assert tuning.recall(synced, typed[100:], truth[100:]) >= AGREEMENT_TARGET
    assert indexes.load(model_id).params == synced.params


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["hnsw", "ivf-flat", "ivf-pq"])
def test_emoji_captions_of_unseen_concepts_find_what_exact_search_finds(
    emoji_models, tmp_path_factory, preset
):
    """Every emoji style indexed with the tiny model the tests train; the captions of the
    concepts it never saw as queries; each preset forced (the store is under `auto`'s
    exact limit), before any query is logged and after."""
    store = emoji_store(emoji_models, tmp_path_factory)
    captions = sorted({r["caption"] for r in emoji_rows() if r["split"] == "val"})
    model = str(emoji_models["dir"] / "tuned")
    with Library(store, precision="fp32", query_log=False) as lib:
        queries = lib.encoder(model, text_only=True).encode_text(captions)
        row = lib.model_with_vectors(lib.encoder(model, text_only=True))
        truth = ground_truth(lib.catalog, row.id, queries, 10)
        lib.store.query_log.clear(row.digest)
        for logged in (False, True):
            if logged:
                with Library(store, precision="fp32") as typing_lib:
                    for caption in captions[::2]:
                        typing_lib.search(caption, k=10, model=model)
            lib.rebuild(preset, model)
            loaded = lib.store.indexes.load(row.id)
            assert tuning.recall(loaded, queries, truth) >= AGREEMENT_TARGET, (logged, preset)


def emoji_rows() -> list[dict]:
    return [json.loads(line) for line in (EMOJI / "captions.jsonl").read_text().splitlines()]


_EMOJI_STORE = {}


def emoji_store(emoji_models, tmp_path_factory):
    if "store" not in _EMOJI_STORE:
        store = tmp_path_factory.mktemp("emoji-store")
        with Library(store, create=True) as lib:
            lib.index([EMOJI / "images"], model=str(emoji_models["dir"] / "tuned"))
        _EMOJI_STORE["store"] = store
    return _EMOJI_STORE["store"]
