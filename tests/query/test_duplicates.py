"""Duplicates: groups from real FAISS over a real catalog, exact copies by content, the
keeper rule, the guard against chaining, and the calibrated default on a trained model."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pytest
from helpers import EMOJI, photos_with_copies
from PIL import Image
from typer.testing import CliRunner

from clipsearch import Library
from clipsearch.cli import app
from clipsearch.query import duplicates
from clipsearch.query.calibration import copies_of
from clipsearch.query.duplicates import find, ordered, vector_groups
from clipsearch.query.search import Filters, QueryError
from clipsearch.storage import synthetic
from clipsearch.storage.catalog import Catalog
from clipsearch.storage.schema import File

runner = CliRunner()


def unit(x: np.ndarray) -> np.ndarray:
    return synthetic.unit(np.atleast_2d(x))


def planted(n: int, dim: int = 64, pairs: int = 20, seed: int = 0):
    """n random unit vectors (far apart in 64-d), the first `pairs` each with a close
    partner appended after them: (vectors, the planted (i, j) pairs as row numbers)."""
    rng = np.random.default_rng(seed)
    base = unit(rng.standard_normal((n, dim)))
    partners = unit(base[:pairs] + 0.15 * rng.standard_normal((pairs, dim)) / np.sqrt(dim))
    return np.vstack([base, partners]), {(i, n + i) for i in range(pairs)}


def as_pairs(groups: list[list[int]]) -> set[tuple[int, int]]:
    return {(a, b) for g in groups for a in g for b in g if a < b}


def test_close_vectors_group_and_far_ones_do_not():
    vectors, truth = planted(500)
    ids = np.arange(len(vectors))
    assert as_pairs(vector_groups(ids, vectors, 0.9)) == truth


def test_comparing_within_clusters_finds_what_comparing_all_finds(monkeypatch):
    vectors, truth = planted(3000, pairs=60)
    ids = np.arange(len(vectors))
    monkeypatch.setattr(duplicates, "FLAT_LIMIT", 100)  # 3,060 vectors: in clusters
    assert as_pairs(vector_groups(ids, vectors, 0.9)) == truth


def test_identical_vectors_group_even_in_numbers_beyond_the_neighbours_asked():
    rng = np.random.default_rng(1)
    others = unit(rng.standard_normal((50, 32)))
    copies = np.repeat(unit(rng.standard_normal(32)), 3 * duplicates.NEIGHBOURS, axis=0)
    groups = vector_groups(np.arange(50 + len(copies)), np.vstack([others, copies]), 0.95)
    assert [sorted(g) for g in groups] == [list(range(50, 50 + len(copies)))]


def test_a_chain_of_close_steps_does_not_glue_its_far_ends():
    """Twelve vectors a step apart on an arc: each is 0.97 alike to the next, two steps
    0.88, the ends far apart. Linked at 0.96, every two members of a group must be at least
    2 * 0.96 - 1 = 0.92 alike: the chain breaks into pairs of neighbours."""
    step = np.arccos(0.97)
    angles = step * np.arange(12)
    arc = np.stack([np.cos(angles), np.sin(angles)], 1)
    vectors = np.hstack([arc, np.zeros((12, 6))]).astype(np.float32)
    groups = vector_groups(np.arange(12), vectors, 0.96)
    assert len(groups) >= 4 and {len(g) for g in groups} == {2}
    for g in groups:
        assert (vectors[g] @ vectors[g].T).min() >= 2 * 0.96 - 1 - 1e-6


def test_the_keeper_is_the_largest_then_the_oldest():
    def row(i, w, h, year, taken=None):
        when = datetime(year, 1, 1).timestamp()
        return File(id=i, path=f"/p/{i}.jpg", size=100 * i, mtime_ns=int(when * 1e9),
                    width=w, height=h, taken_at=taken)  # fmt: skip

    rows = [row(1, 800, 600, 2021), row(2, 1600, 1200, 2023), row(3, 1600, 1200, 2020),
            row(4, 1600, 1200, 2024, taken=datetime(2019, 6, 1))]  # fmt: skip
    group = ordered("near", rows, {})
    assert [m.id for m in group.items] == [4, 3, 2, 1]  # EXIF 2019 is the oldest of the large
    assert [m.keep for m in group.items] == [True, False, False, False]
    assert [m.id for m in group.extra] == [3, 2, 1]


def store_of_vectors(tmp_path, vectors: np.ndarray) -> tuple[Catalog, int]:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    model = ("synthetic", "none", "digest-synthetic", vectors.shape[1])
    folder = lambda i: f"/p/{'a' if i % 2 else 'b'}/{i}.jpg"  # noqa: E731
    return catalog, synthetic.file_vectors(catalog, vectors, model, folder)


def test_groups_come_from_the_catalog_scored_against_their_keeper(tmp_path):
    vectors, truth = planted(300, pairs=10)
    catalog, model_id = store_of_vectors(tmp_path, vectors)
    groups = find(catalog, model_id, "near", 0.9)
    assert {tuple(sorted(m.id - 1 for m in g.items)) for g in groups} == truth  # ids from 1
    for g in groups:
        keeper, other = g.items
        assert keeper.keep and not other.keep and keeper.score == pytest.approx(1.0, abs=1e-6)
        assert other.score == pytest.approx(float(vectors[keeper.id - 1] @ vectors[other.id - 1]))


def test_filters_and_named_files_narrow_the_groups(tmp_path):
    vectors, truth = planted(300, pairs=10)
    catalog, model_id = store_of_vectors(tmp_path, vectors)
    # folder a holds the odd ids: of the pairs (i + 1, 301 + i), those of an even i
    inside = find(catalog, model_id, "near", 0.9, Filters.parse(["/p/a"]))
    assert sorted(sorted(m.id for m in g.items) for g in inside) == [
        [i + 1, 301 + i] for i in range(0, 10, 2)
    ]
    named = find(catalog, model_id, "near", 0.9, of=["/p/b/2.jpg"])
    assert [sorted(m.id for m in g.items) for g in named] == [[2, 302]]


def test_exact_copies_are_found_by_their_bytes_and_listed_for_a_script(tmp_path):
    photos = photos_with_copies(tmp_path / "photos")
    store = tmp_path / "store"
    assert runner.invoke(app, ["index", str(photos), "--store", str(store), "--model",
                               "random:tiny"]).exit_code == 0  # fmt: skip
    args = ["duplicates", "--store", str(store), "--kind", "exact"]
    result = runner.invoke(app, [*args, "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    (group,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert group["kind"] == "exact"
    names = [item["path"].rsplit("/", 1)[1] for item in group["items"]]
    assert sorted(names) == ["p0-again.png", "p0-copy.png", "p0.png"]
    assert [item["keep"] for item in group["items"]] == [True, False, False]
    assert set(group["items"][0]) == {"id", "path", "score", "width", "height", "bytes",
                                      "taken", "keep"}  # fmt: skip
    paths = runner.invoke(app, [*args, "--format", "paths"]).stdout.splitlines()
    assert paths == [item["path"] for item in group["items"][1:]]
    for p in paths:  # listed, never touched
        assert (photos / p.rsplit("/", 1)[1]).exists()


def test_a_threshold_given_groups_without_measuring_and_the_html_shows_each_group(tmp_path):
    photos = photos_with_copies(tmp_path / "photos")
    store = tmp_path / "store"
    runner.invoke(app, ["index", str(photos), "--store", str(store), "--model", "random:tiny"])
    page = tmp_path / "dups.html"
    result = runner.invoke(app, ["duplicates", "--store", str(store), "--threshold", "0.999999",
                                 "-o", str(page)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not (store / "duplicate-thresholds.json").exists()  # nothing was measured
    html = page.read_text()
    assert html.count("<section>") >= 1 and html.count("<b>keep</b>") == html.count("<section>")
    assert "p0-copy.png" in html and "data:image/jpeg;base64," in html


@pytest.mark.parametrize(
    "args, said",
    [
        (["--kind", "twins"], "unknown kind of duplicate 'twins'"),
        (["--threshold", "2"], "-1<=x<=1"),
    ],
)
def test_a_bad_request_is_one_line(tmp_path, args, said):
    photos = photos_with_copies(tmp_path / "photos")
    store = tmp_path / "store"
    runner.invoke(app, ["index", str(photos), "--store", str(store), "--model", "random:tiny"])
    result = runner.invoke(app, ["duplicates", "--store", str(store), *args])
    assert result.exit_code != 0
    assert said in result.output and "Traceback" not in result.output


def test_the_library_refuses_a_threshold_that_is_no_similarity(tmp_path):
    photos = photos_with_copies(tmp_path / "photos")
    with Library(tmp_path / "store", create=True) as lib:
        lib.index([photos], model="random:tiny")
        with pytest.raises(QueryError, match="from -1 to 1"):
            lib.duplicates("near", threshold=1.5)


def emoji_copies(folder, count: int = 40):
    """`count` openmoji pictures of the val split (concepts no training saw), each with
    its copies as an archive holds them (calibration.copies_of) and as a rotated JPEG
    whose EXIF turns it back: {original name: its copies' names}."""
    lines = [json.loads(x) for x in (EMOJI / "captions.jsonl").read_text().splitlines()]
    picked = [x for x in lines if x["split"] == "val" and x["vendor"] == "openmoji"][:count]
    families = {}
    for x in picked:
        img = Image.open(EMOJI / x["image"]).convert("RGB").resize((256, 256), Image.BICUBIC)
        stem = x["codepoint"]
        img.save(folder / f"{stem}.png")
        names = []
        for n, copy in enumerate(copies_of(img)):
            copy.convert("RGB").save(folder / f"{stem}-copy{n}.jpg", quality=90)
            names.append(f"{stem}-copy{n}.jpg")
        exif = Image.Exif()
        exif[0x0112] = 6  # shown turned 90° clockwise: the pixels are stored turned back
        img.transpose(Image.Transpose.ROTATE_90).save(folder / f"{stem}-turned.jpg", exif=exif)
        families[f"{stem}.png"] = names + [f"{stem}-turned.jpg"]
    return families


def test_the_measured_default_finds_copies_on_a_trained_model(emoji_models, tmp_path):
    """On a model that learned something, the threshold measured on the store's own photos
    groups most copies with their original and few different pictures together."""
    photos = tmp_path / "photos"
    photos.mkdir()
    families = emoji_copies(photos)
    family_of = {n: orig for orig, names in families.items() for n in [orig, *names]}
    with Library(tmp_path / "store", create=True) as lib:
        lib.index([photos], model=str(emoji_models["dir"] / "tuned"))
        found = lib.duplicates("near")
    measured = found.calibrated
    assert measured is not None and measured.photos == 32
    assert found.threshold == measured.near and measured.similar <= measured.near
    pairs = {
        tuple(sorted((a.path.rsplit("/", 1)[1], b.path.rsplit("/", 1)[1])))
        for g in found.groups
        for a in g.items
        for b in g.items
        if a.id < b.id
    }
    right = {p for p in pairs if family_of[p[0]] == family_of[p[1]]}
    every = sum(len(n) * (len(n) + 1) // 2 for n in families.values())
    assert len(right) / max(1, len(pairs)) >= 0.95  # precision: BENCHMARKS.md has the figures
    assert len(right) / every >= 0.3  # recall: this 32-pixel model puts emoji close together
