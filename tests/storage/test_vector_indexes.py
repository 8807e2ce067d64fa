"""Vector index presets on real FAISS indexes over a real catalog of clustered vectors."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from helpers import clustered, make_store

from clipsearch.core.errors import ClipsearchError
from clipsearch.core.files import temporary_name
from clipsearch.core.sizes import parse_size
from clipsearch.query.search import Filters, nearest
from clipsearch.storage.exact import exact_topk
from clipsearch.storage.index_files import write_index_file
from clipsearch.storage.presets import choose_preset, presets, training_sample
from clipsearch.storage.vector_indexes import set_training_effort


@pytest.fixture
def store(tmp_path):
    """A store of its own, for tests that change the catalog."""
    return make_store(tmp_path)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One read-only store whose indexes are built once per preset (OPQ trains slowly)."""
    catalog, indexes, model_id, vectors = make_store(tmp_path_factory.mktemp("shared"))
    queries = clustered(100, seed=5)
    built = {p: indexes.build(model_id, p, prompts=queries) for p in presets()}
    return catalog, built, vectors, queries


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    return np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])


@pytest.mark.parametrize("preset", ["exact", "hnsw", "ivf-flat", "ivf-pq"])
def test_each_preset_reaches_recall_target_after_tuning(shared, preset):
    catalog, built, vectors, queries = shared
    loaded = built[preset]
    assert loaded.preset.name == preset and loaded.count == 4000
    ids = np.arange(1, 4001)
    _, truth = exact_topk(queries, ids, vectors, 10)
    found = np.array([[i for i, _ in nearest(catalog, loaded, q, 10)] for q in queries])
    assert recall_at_10(found, truth) >= 0.95
    if preset != "exact":
        assert loaded.preset.tune in loaded.params


def test_saved_index_loads_and_catches_up_with_the_log(store):
    catalog, indexes, model_id, vectors = store
    indexes.save(indexes.build(model_id, "ivf-flat"))
    with catalog.write() as s:
        catalog.files.remove(s, [1, 2, 3])
    loaded, action = indexes.get(model_id)
    assert action == "updated" and loaded.count == 3997
    hits = nearest(catalog, loaded, vectors[0], 5)
    assert 1 not in [i for i, _ in hits]


def test_hnsw_removals_are_tombstones_until_rebuild(store):
    catalog, indexes, model_id, vectors = store
    indexes.save(indexes.build(model_id, "hnsw"))
    with catalog.write() as s:
        catalog.files.remove(s, [1])
    loaded, _ = indexes.sync(model_id, "hnsw")
    assert loaded.tombstones == {1} and loaded.count == 3999
    assert 1 not in [i for i, _ in nearest(catalog, loaded, vectors[0], 10)]
    with catalog.write() as s:  # past 10% dead: rebuilt clean
        catalog.files.remove(s, list(range(2, 500)))
    loaded, action = indexes.sync(model_id, "hnsw")
    assert action == "rebuilt" and not loaded.tombstones and loaded.count == 3501


@pytest.mark.parametrize("preset", ["exact", "hnsw", "ivf-flat", "ivf-pq"])
def test_filtered_search_is_exact_over_the_filtered_set(shared, preset, monkeypatch):
    catalog, built, vectors, _ = shared
    loaded = built[preset]
    monkeypatch.setattr("clipsearch.query.search.EXACT_SUBSET_LIMIT", 0)  # force the FAISS path
    q = vectors[7]
    hits = nearest(catalog, loaded, q, 10, Filters(folders=["/p/3"]))
    in_folder = np.array([i + 1 for i in range(4000) if i % 4 == 3])
    _, truth = exact_topk(q[None], in_folder, vectors[in_folder - 1], 10)
    assert len(hits) == 10
    assert recall_at_10(np.array([[i for i, _ in hits]]), truth) >= 0.9
    assert all((i - 1) % 4 == 3 for i, _ in hits)


def test_small_filtered_set_returns_k_results_exactly(shared):
    catalog, built, vectors, _ = shared
    loaded = built["ivf-pq"]
    hits = nearest(catalog, loaded, vectors[0], 10, Filters(folders=["/p/1"]))
    in_folder = np.array([i + 1 for i in range(4000) if i % 4 == 1])
    _, truth = exact_topk(vectors[0][None], in_folder, vectors[in_folder - 1], 10)
    assert [i for i, _ in hits] == truth[0].tolist()


def test_auto_preset_follows_size_and_memory():
    assert choose_preset(10_000, 512).name == "exact"
    assert choose_preset(500_000, 512, memory_budget=8 << 30).name == "hnsw"
    assert choose_preset(500_000, 512, memory_budget=1_100_000_000).name == "ivf-flat"
    assert choose_preset(5_000_000, 512, memory_budget=1 << 30).name == "ivf-pq"


def test_presets_are_declared_in_files():
    assert set(presets()) == {"exact", "hnsw", "ivf-flat", "ivf-pq"}
    pq = presets()["ivf-pq"]
    assert pq.factory_for(1_000_000, 512) == "OPQ64,IVF4000,PQ64x8np" and pq.rerank > 1
    # a small collection: 40 training points for every centroid of every k-means
    assert pq.factory_for(5000, 64) == "IVF125,PQ16x6np"
    assert presets()["ivf-flat"].factory_for(5000, 64) == "IVF125,Flat"


@pytest.mark.parametrize("preset", ["exact", "hnsw"])
def test_vectors_committed_during_a_build_are_indexed_once(store, preset):
    """An indexer commits while a query builds the index: the new vectors are both read
    and in the log since the build's start; they must not be added twice."""
    catalog, indexes, model_id, _ = store
    late = clustered(3, seed=9)
    read_batches = catalog.vectors.batches

    def commit_then_read(mid, *args):
        with catalog.write() as s:
            ids = [catalog.files.add(s, f"/late/{i}.jpg", 1, 1).id for i in range(3)]
            assert ids == [4001, 4002, 4003]
            catalog.vectors.add(s, mid, ids, late)
        catalog.vectors.batches = read_batches
        return read_batches(mid, *args)

    catalog.vectors.batches = commit_then_read
    loaded = indexes.build(model_id, preset)
    assert loaded.index.ntotal == loaded.count == 4003
    scores, ids = loaded.search(late[:1], 2)
    assert ids[0][0] == 4001 and ids[0][1] != 4001


@pytest.mark.parametrize("preset", ["ivf-flat", "ivf-pq"])
def test_an_index_built_in_chunks_answers_as_one_built_from_all_vectors(store, preset):
    """The build streams the catalog a chunk at a time; the result must be the index
    that the same training sample and every vector at once would make."""
    catalog, indexes, model_id, vectors = store
    indexes.chunk = 700
    chunked = indexes.build(model_id, preset)
    whole = faiss.index_factory(64, chunked.factory, faiss.METRIC_INNER_PRODUCT)
    set_training_effort(whole, chunked.preset.train)
    ids = catalog.vectors.ids(model_id)
    whole.train(vectors[training_sample(ids, chunked.factory) - 1])
    whole.add_with_ids(vectors, np.arange(1, 4001))
    queries = clustered(50, seed=3)
    params = faiss.SearchParametersIVF(nprobe=8)
    if "OPQ" in chunked.factory:
        params = faiss.SearchParametersPreTransform(index_params=params)
    a = chunked.index.search(queries, 10, params=params)
    b = whole.search(queries, 10, params=params)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.parametrize("preset", ["ivf-flat", "ivf-pq"])
def test_ivf_files_are_memory_mapped_and_copied_out_only_to_change(store, preset):
    catalog, indexes, model_id, vectors = store
    built = indexes.build(model_id, preset)
    path = indexes.save(built)
    before = path.read_bytes()
    loaded, action = indexes.get(model_id)
    assert action == "loaded" and loaded.mapped
    queries = clustered(20, seed=4)
    np.testing.assert_array_equal(
        loaded.search(queries, 10)[1], built.with_params(loaded.params).search(queries, 10)[1]
    )
    late = clustered(1, seed=11)
    with catalog.write() as s:
        (row,) = [catalog.files.add(s, "/late/0.jpg", 1, 1)]
        catalog.vectors.add(s, model_id, [row.id], late)
        catalog.files.remove(s, [1])
    refreshed = indexes.refresh(loaded)
    assert not refreshed.mapped and refreshed.count == 4000
    found = refreshed.search(late, 1)[1][0][0]
    assert found == row.id and 1 not in refreshed.search(vectors[:1], 10)[1][0]
    assert path.read_bytes() == before  # the mapped file was never written through


def test_hnsw_tombstones_survive_the_file(store):
    catalog, indexes, model_id, vectors = store
    loaded = indexes.build(model_id, "hnsw")
    loaded.tombstones.update({5, 6})
    indexes.save(loaded)
    again = indexes.load(model_id)
    assert again.tombstones == {5, 6} and not again.mapped and again.count == 3998


def test_an_index_file_of_another_format_is_rebuilt(store):
    catalog, indexes, model_id, _ = store
    path = indexes.save(indexes.build(model_id, "exact"))
    path.write_bytes(b"PK\x03\x04" + bytes(64))  # an older clipsearch's .npz, say
    loaded, action = indexes.get(model_id)
    assert action == "rebuilt" and loaded.count == 4000


@pytest.mark.parametrize(
    "text, size", [("800M", 800 << 20), ("4G", 4 << 30), ("1.5GiB", 3 << 29), ("512", 512)]
)
def test_memory_budgets_are_read_in_powers_of_1024(text, size):
    assert parse_size(text) == size


def test_a_memory_budget_that_is_not_a_size_says_how_to_write_one():
    with pytest.raises(ClipsearchError, match="800M, 4G"):
        parse_size("lots")


def test_the_budget_makes_auto_compress(store):
    catalog, indexes, model_id, _ = store
    assert indexes.build(model_id, "auto").preset.name == "exact"
    assert indexes.build(model_id, "auto", memory_budget=100_000).preset.name == "ivf-pq"


def test_a_full_disk_while_faiss_writes_is_an_os_error(tmp_path):
    """FAISS reports a failed write as RuntimeError; the store reports IndexWriteError."""
    index = faiss.IndexFlatIP(64)
    index.add(clustered(2000))
    path = tmp_path / "model1-exact-1.faiss"
    temporary_name(path).symlink_to("/dev/full")
    with pytest.raises(OSError):
        write_index_file(path, index, set())
    assert not path.exists()


@pytest.mark.parametrize("preset", ["hnsw", "ivf-flat"])
def test_a_k_near_the_collection_size_gets_every_vector(shared, preset):
    catalog, built, vectors, queries = shared
    loaded = built[preset]
    hits = nearest(catalog, loaded, queries[0], 4000)
    assert len(hits) == 4000 and len({i for i, _ in hits}) == 4000
    _, truth = exact_topk(queries[:1], np.arange(1, 4001), vectors, 4000)
    assert [i for i, _ in hits[:50]] == list(truth[0][:50])
