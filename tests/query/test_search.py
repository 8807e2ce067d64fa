"""Queries end to end through the real CLI: a real store, real images, a random model."""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from html.parser import HTMLParser

import numpy as np
import pytest
from helpers import camera_photo, make_image
from PIL import Image
from typer.testing import CliRunner

from clipsearch.cli import app
from clipsearch.models.encoder import load_model
from clipsearch.query.search import Filters, QueryError, Term, combine, describe, parse_query

runner = CliRunner()
MODEL = "random:tiny"


def cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def jan(year: int) -> float:
    return datetime(year, 1, 15).timestamp()


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """24 PNGs in two folders with mtimes in 2019..2022, two JPEGs, one with an EXIF date."""
    root = tmp_path_factory.mktemp("lib")
    photos = root / "photos"
    for i in range(24):
        folder = photos / ("trips" if i % 2 else "home")
        path = make_image(folder / f"{i:02d}.png", seed=i)
        os.utime(path, (jan(2019 + i % 4), jan(2019 + i % 4)))
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = "2015:06:01 12:00:00"
    make_image(photos / "old.jpg", seed=100, size=(120, 90), exif=exif)
    make_image(photos / "new.jpg", seed=101, size=(120, 90))
    store = root / "store"
    result = cli("index", photos, "--model", MODEL, "--store", store, "--workers", "1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == 26
    return photos, store


def query(indexed, *args):
    photos, store = indexed
    return cli("query", *args, "--store", store)


def as_json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_image_query_finds_itself_first(indexed):
    photos, _ = indexed
    data = as_json(query(indexed, photos / "home" / "04.png", "-f", "json", "-k", "3"))
    top = data["results"][0]
    assert top["path"] == str(photos / "home" / "04.png") and top["score"] > 0.999
    assert len(data["results"]) == 3 and data["model"] == "random:tiny:0"


def test_outside_image_is_embedded(indexed, tmp_path):
    photos, _ = indexed
    outside = make_image(tmp_path / "elsewhere.png", seed=4)  # same pixels as home/04.png
    data = as_json(query(indexed, "--image", outside, "-f", "json", "-k", "1"))
    assert data["results"][0]["path"] == str(photos / "home" / "04.png")


def test_similar_excludes_the_image_itself(indexed):
    photos, store = indexed
    target = photos / "trips" / "05.png"
    data = as_json(cli("similar", target, "--store", store, "-f", "json", "-k", "5"))
    paths = [r["path"] for r in data["results"]]
    assert str(target) not in paths and len(paths) == 5


def test_folder_filter_returns_k_from_that_folder(indexed):
    photos, _ = indexed
    data = as_json(query(indexed, "a photo", "--in", photos / "trips", "-k", "10", "-f", "json"))
    paths = [r["path"] for r in data["results"]]
    assert len(paths) == 10 and all("/trips/" in p for p in paths)


def test_date_filters_use_exif_then_mtime(indexed):
    data = as_json(query(indexed, "x", "--before", "2016", "-k", "50", "-f", "json"))
    assert [os.path.basename(r["path"]) for r in data["results"]] == ["old.jpg"]
    data = as_json(
        query(
            indexed,
            "x",
            "--after",
            "2021-01-01",
            "--before",
            "2022-01-01",
            "-k",
            "50",
            "-f",
            "json",
        )
    )
    names = {os.path.basename(r["path"]) for r in data["results"]}
    assert names == {f"{i:02d}.png" for i in range(24) if i % 4 == 2}


def test_extension_filter(indexed):
    data = as_json(query(indexed, "x", "--ext", "jpeg", "-k", "50", "-f", "json"))
    assert {os.path.basename(r["path"]) for r in data["results"]} == {"old.jpg", "new.jpg"}


def names_found(store, *args) -> set[str]:
    """The names of the files a query for "x" with these options finds (up to 10)."""
    result = cli("query", "x", *args, "-k", "10", "-f", "json", "--store", store)
    assert result.exit_code == 0, result.output
    return {os.path.basename(r["path"]) for r in as_json(result)["results"]}


def test_near_keeps_photos_taken_around_a_place(tmp_path):
    photos = tmp_path / "photos"
    camera_photo(
        photos / "eiffel.jpg", 1, "Canon", "EOS R5", place=(48.8584, 2.2945), lens="RF50mm"
    )
    camera_photo(photos / "louvre.jpg", 2, "Canon", "EOS R5", place=(48.8606, 2.3376))  # 3.2 km
    camera_photo(photos / "london.jpg", 3, None, None, place=(51.5007, -0.1246))  # 340 km
    camera_photo(photos / "sydney.jpg", 4, None, None, place=(-33.8568, 151.2153))
    camera_photo(photos / "fiji.jpg", 5, None, None, place=(-17.0, 179.99))  # by the 180th
    camera_photo(photos / "nowhere.jpg", 6, "Apple", "iPhone 15")  # no GPS: never matches
    store = tmp_path / "store"
    assert cli("index", photos, "--model", MODEL, "--store", store, "--workers", "1").exit_code == 0
    found = functools.partial(names_found, store)
    assert found("--near", "48.8584,2.2945,1") == {"eiffel.jpg"}
    assert found("--near", "48.8584,2.2945") == {"eiffel.jpg", "louvre.jpg"}  # 10 km
    assert found("--near", "48.8584,2.2945,500") == {"eiffel.jpg", "louvre.jpg", "london.jpg"}
    assert found("--near", "-33.86,151.21,5", "--camera", "canon") == set()
    assert found("--near", "-17.0,-179.99,10") == {"fiji.jpg"}  # across the 180th meridian
    results = as_json(
        cli("query", "x", "--near", "48.8584,2.2945,1", "-f", "json", "--store", store)
    )
    (eiffel,) = results["results"]
    assert (eiffel["latitude"], eiffel["longitude"]) == pytest.approx((48.8584, 2.2945), abs=1e-6)
    assert eiffel["lens"] == "RF50mm" and eiffel["camera"] == "Canon EOS R5"
    for bad in ("48.8", "north,2", "91,0", "0,0,0", "nan,0"):
        result = cli("query", "x", "--near", bad, "--store", store)
        assert result.exit_code == 1 and "not a place" in result.output, bad
    status = cli("status", "--store", store)
    assert "Cameras: Canon EOS R5 (2), Apple iPhone 15 (1)" in status.stdout
    assert "Photos with a place (GPS): 5" in status.stdout
    duplicates = cli("duplicates", "--kind", "exact", "--near", "0,0", "--store", store)
    assert duplicates.exit_code == 0, duplicates.output


def test_camera_filter_matches_make_and_model_in_any_case(tmp_path):
    photos = tmp_path / "photos"
    camera_photo(photos / "canon.jpg", 1, "Canon", "Canon EOS R5")
    camera_photo(photos / "nikon.jpg", 2, "NIKON CORPORATION", "NIKON D750")
    camera_photo(photos / "phone.jpg", 3, "Apple", "iPhone 15 Pro")
    camera_photo(photos / "scan.jpg", 4, None, None)  # no camera data: never matches
    store = tmp_path / "store"
    assert cli("index", photos, "--model", MODEL, "--store", store, "--workers", "1").exit_code == 0
    found = functools.partial(names_found, store)
    assert found("--camera", "eos r5") == found("--camera", "CANON") == {"canon.jpg"}
    assert found("--camera", "nikon") == {"nikon.jpg"}
    assert found("--camera", "iphone") == found("--camera", "Apple iPhone") == {"phone.jpg"}
    assert found("--camera", "sony") == set()
    assert found("--camera", "%") == set()  # a character, not a wildcard
    assert found() == {"canon.jpg", "nikon.jpg", "phone.jpg", "scan.jpg"}
    near = cli("similar", photos / "scan.jpg", "--camera", "nikon", "-f", "json", "--store", store)
    assert [os.path.basename(r["path"]) for r in as_json(near)["results"]] == ["nikon.jpg"]
    empty = cli("query", "x", "--camera", " ", "--store", store)
    assert empty.exit_code == 1 and "not a camera" in empty.output


def test_min_score(indexed):
    photos, _ = indexed
    data = as_json(
        query(
            indexed, photos / "home" / "00.png", "--min-score", "0.9999", "-f", "json", "-k", "20"
        )
    )
    assert [r["path"] for r in data["results"]] == [str(photos / "home" / "00.png")]


def test_sort_by_date_orders_the_best_matches(indexed):
    best = as_json(query(indexed, "a photo", "-k", "26", "-f", "json"))["results"]
    newest = as_json(query(indexed, "a photo", "-k", "26", "--sort", "-date", "-f", "json"))
    dates = [r["date"] for r in newest["results"]]
    assert dates == sorted(dates, reverse=True) and dates[-1].startswith("2015-06-01")
    assert sorted(r["path"] for r in newest["results"]) == sorted(r["path"] for r in best)
    oldest = as_json(query(indexed, "a photo", "-k", "5", "--sort", "date", "-f", "json"))
    assert [r["date"] for r in oldest["results"]] == sorted(dates)[:5]
    bad = query(indexed, "a photo", "--sort", "name")
    assert bad.exit_code == 1 and "unknown sort 'name'" in bad.stderr


def test_combination_is_shown_and_changes_ranking(indexed):
    photos, _ = indexed
    a, b = photos / "home" / "00.png", photos / "home" / "02.png"
    plain = as_json(query(indexed, a, "-f", "json", "-k", "26"))
    combo = as_json(query(indexed, a, "-", f"0.5:{b}", "-f", "json", "-k", "26"))
    assert combo["query"].startswith("image ") and "- 0.5×image" in combo["query"]
    rank = [r["path"] for r in combo["results"]]
    assert rank.index(str(b)) > [r["path"] for r in plain["results"]].index(str(b))


def test_table_jsonl_and_paths_formats(indexed):
    photos, _ = indexed
    table = query(indexed, photos / "home" / "00.png", "-k", "2")
    assert table.exit_code == 0 and "00.png" in table.stdout and "score" in table.stdout
    lines = query(indexed, "x", "-k", "3", "-f", "jsonl").stdout.strip().splitlines()
    assert len(lines) == 3 and all("score" in json.loads(line) for line in lines)
    paths = query(indexed, "x", "-k", "4", "-f", "paths").stdout.strip().splitlines()
    assert len(paths) == 4 and all(os.path.isfile(p) for p in paths)


class Gallery(HTMLParser):
    def __init__(self):
        super().__init__()
        self.figures, self.images = [], 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "figure":
            self.figures.append((a["data-path"], float(a["data-score"])))
        if tag == "img" and a["src"].startswith("data:image/jpeg;base64,"):
            self.images += 1


def test_html_gallery_is_self_contained(indexed, tmp_path):
    photos, _ = indexed
    out = tmp_path / "g.html"
    result = query(indexed, photos / "home" / "00.png", "-k", "5", "-f", "html", "-o", out)
    assert result.exit_code == 0
    page = Gallery()
    page.feed(out.read_text())
    assert len(page.figures) == 5 and page.images == 5
    assert page.figures[0][0] == str(photos / "home" / "00.png")
    assert "http" not in out.read_text()


def test_no_store_says_to_index_first(tmp_path):
    result = cli("query", "cat", "--store", tmp_path / "nothing")
    assert result.exit_code == 1 and "clipsearch index" in result.stderr


def test_empty_query(indexed):
    result = query(indexed, "")
    assert result.exit_code == 1 and "empty query" in result.stderr


def test_long_query_is_truncated_with_warning(indexed):
    result = query(indexed, "a very long description " * 30, "-k", "1")
    assert result.exit_code == 0 and "truncated" in result.stderr


def test_undecodable_image_query(indexed, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really")
    result = query(indexed, "--image", bad)
    assert result.exit_code == 1 and "broken.jpg" in result.stderr
    assert "Traceback" not in result.output


def test_model_without_vectors_names_the_models_that_have_them(indexed):
    result = query(indexed, "cat", "--model", "random:tiny:7")
    assert result.exit_code == 1
    assert "random:tiny:0 (26 vectors)" in result.stderr and "clipsearch index" in result.stderr


def test_corrupt_index_is_rebuilt_then_answers(indexed, tmp_path):
    import shutil

    photos, store = indexed
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    for f in (copy / "indexes").glob("*.faiss"):
        f.write_bytes(b"\x00" * 100)
    result = cli("query", photos / "home" / "00.png", "--store", copy, "-f", "json", "-k", "1")
    assert as_json(result)["results"][0]["path"] == str(photos / "home" / "00.png")


def test_status_and_forget_and_rebuild(indexed, tmp_path):
    import shutil

    photos, store = indexed
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    status = as_json(cli("status", "--store", copy, "--json"))
    assert status["files"]["ok"] == 26 and status["models"][0]["index"]["preset"] == "exact"
    assert not status["models"][0]["index"]["stale"]
    assert as_json(cli("forget", photos / "trips", "--store", copy, "--json"))["forgotten"] == 12
    data = as_json(cli("query", "x", "--store", copy, "-k", "50", "-f", "json"))
    assert len(data["results"]) == 14 and not any("/trips/" in r["path"] for r in data["results"])
    rebuilt = as_json(cli("rebuild", "--preset", "hnsw", "--store", copy, "--json"))
    assert rebuilt[0]["preset"] == "hnsw" and rebuilt[0]["count"] == 14


QUERY_WHILE_INDEXING = """
import sys
from clipsearch.models.encoder import load_model
from clipsearch.indexing.indexer import IndexOptions, Indexer
from clipsearch.storage.store import Store
options = IndexOptions(batch_size=2, workers=1)
Indexer(Store(sys.argv[1]), load_model("random:tiny"), options).run([sys.argv[2]])
"""


def test_query_while_indexing_answers_from_what_is_committed(tmp_path):
    photos = tmp_path / "p"
    for i in range(400):
        make_image(photos / f"{i:03d}.png", seed=i, size=(400, 300))
    store = tmp_path / "store"

    def committed_now() -> int:
        try:
            db = sqlite3.connect(store / "catalog.db", timeout=1)
            n = db.execute("select count(*) from vectors").fetchone()[0]
            db.close()
            return n
        except sqlite3.OperationalError:
            return 0

    import clipsearch.library  # noqa: F401  (torch: seconds to import, a race lost if paid late)

    proc = subprocess.Popen([sys.executable, "-c", QUERY_WHILE_INDEXING, str(store), str(photos)])
    try:
        deadline = time.time() + 120
        while committed_now() < 6 and time.time() < deadline:
            time.sleep(0.2)
        before = committed_now()
        result = cli("query", "anything", "--store", store, "-k", "1000", "-f", "json")
        after = committed_now()
        paths = [r["path"] for r in as_json(result)["results"]]
        assert len(set(paths)) == len(paths)
        assert before <= len(paths) <= after < 400
    finally:
        proc.kill()
        proc.wait()


def test_repeated_text_query_reuses_its_vector(indexed):
    from clipsearch.library import Library

    _, store = indexed
    with Library(store) as lib:
        first = lib.search("a red square", k=5, model=MODEL)
        encoder = lib.query_encoder(MODEL, text_only=True)
        before = encoder.texts_encoded
        again = lib.search("a red square", k=5, model=MODEL, filters=Filters(extensions=("png",)))
        lib.search(["a red square", "+", "a blue circle"], k=5, model=MODEL)
        assert encoder.texts_encoded == before + 1  # only "a blue circle" was new
    pngs = [r for r in first.results if r.path.endswith(".png")]
    assert [r.path for r in again.results][: len(pngs)] == [r.path for r in pngs]


@pytest.mark.usefixtures("cpu_kind")
def test_text_query_loads_only_the_text_tower(indexed, tmp_path):
    from clipsearch.library import Library

    photos, store = indexed
    model = tmp_path / "model"
    load_model(MODEL).save(str(model))  # a model on disk, like a download
    index = cli("index", photos, "--model", model, "--store", store, "--workers", "1")
    assert index.exit_code == 0, index.output
    with Library(store) as lib:
        by_text = lib.search("a red square", k=3, model=str(model))
        assert lib.encoder(str(model), text_only=True).text_only
        by_image = lib.search([], k=1, images=[str(photos / "home" / "00.png")], model=str(model))
        assert not lib.encoder(str(model), text_only=True).text_only  # the whole one, kept
        assert by_image.results[0].path == str(photos / "home" / "00.png")
        assert lib.search("a red square", k=3, model=str(model)).results == by_text.results


def test_undecodable_and_bracketed_names_in_every_format(tmp_path):
    """A name that is not UTF-8 comes back byte for byte in `paths`, as a JSON escape
    that decodes to the same name, and printable in the table; brackets stay text."""
    photos = tmp_path / "photos"
    odd = make_image(photos / os.fsdecode(b"caf\xe9 \xff.png"), seed=1)
    make_image(photos / "holiday [1].png", seed=2)
    (photos / os.fsdecode(b"bad \xfe.png")).write_text("not an image")
    store = tmp_path / "store"
    index = cli("index", photos, "--model", MODEL, "--store", store, "--workers", "1")
    assert index.exit_code == 0, index.output
    failed = cli("status", "--store", store, "--failed")
    assert failed.exit_code == 0, failed.output
    assert "bad \\udcfe.png" in failed.stdout
    ask = ["query", odd, "--store", store, "-k", "2", "--in", photos]
    paths = runner.invoke(app, [*map(str, ask), "-f", "paths"])
    assert paths.exit_code == 0, paths.output
    assert paths.stdout_bytes.split(b"\n")[0] == os.fsencode(odd)
    listed = as_json(cli(*ask, "-f", "json"))["results"]
    assert [r["path"] for r in listed][0] == str(odd)
    table = runner.invoke(app, list(map(str, ask)), env={"COLUMNS": "400"})
    assert table.exit_code == 0, table.output
    assert "holiday [1].png" in table.stdout
    assert "caf\\udce9 \\udcff.png" in table.stdout


def test_parse_query_operators_weights_and_images(tmp_path):
    img = make_image(tmp_path / "q.png")
    terms = parse_query(["beach", "+", "sunset", "-", "2:people", str(img)])
    assert terms == [
        Term(1, "beach"),
        Term(1, "sunset"),
        Term(-2, "people"),
        Term(1, image=str(img)),
    ]
    assert describe(terms).startswith("'beach' + 'sunset' - 2×'people' + image")
    with pytest.raises(QueryError):
        parse_query(["  "])


def test_combine_renormalises_and_refuses_cancelling_terms():
    v = np.eye(3, dtype=np.float32)
    q = combine(v[:2], [1, 1])
    assert np.isclose(np.linalg.norm(q), 1) and np.allclose(q[:2], 2**-0.5)
    with pytest.raises(QueryError, match="cancel"):
        combine(np.stack([v[0], v[0]]), [1, -1])


@pytest.mark.slow
def test_semantic_search_with_a_model_trained_by_clipsearch(emoji_models, tmp_path):
    """Index all 5,188 emoji with the model clipsearch trained and fine-tuned; the caption
    of each held-out concept should find one of its (at most 3) images in the top 5.
    Chance is about 5 x 3 / 5,188 = 0.3%. Queries run as a user's would (precision auto:
    int8 or fp16 weights if the store's check passes) and in fp32; the two must find about
    as much."""
    from helpers import EMOJI, write_emoji_split

    from clipsearch import Library

    val = write_emoji_split(EMOJI, tmp_path / "v.jsonl", "val", {"twemoji", "noto", "openmoji"})
    rows = [json.loads(line) for line in val.read_text().splitlines()]
    concept_of = {r["image"]: r["codepoint"] for r in rows}
    queries = {r["caption"]: r["codepoint"] for r in rows}
    model = str(emoji_models["dir"] / "tuned")
    with Library(tmp_path / "store", create=True) as lib:
        report = lib.index([EMOJI / "images"], model=model)
        assert report.added == 5188
    rates, used = {}, {}
    for precision in ("auto", "fp32"):
        with Library(tmp_path / "store", precision=precision) as lib:
            hits = sum(
                any(concept_of.get(r.path) == codepoint for r in lib.search(caption, k=5).results)
                for caption, codepoint in queries.items()
            )
            used[precision] = lib.query_encoder(text_only=True).precision
            check = lib.status().models[0].query_precision
        rates[precision] = hits / len(queries)
    chance = 5 * len(concept_of) / len(queries) / 5188  # ~3 images per concept
    print(
        f"\nsemantic search over all 5,188 emoji, {len(queries)} unseen concepts: "
        f"top-5 hit rate {rates['auto']:.1%} with precision auto ({used['auto']}, "
        f"precision check {check}), "
        f"{rates['fp32']:.1%} in fp32 (chance {chance:.2%})"
    )
    assert rates["auto"] > 5 * chance
    assert abs(rates["auto"] - rates["fp32"]) <= 0.02


def test_output_format_follows_the_files_extension_unless_given(indexed, tmp_path):
    _, store = indexed
    base = ["query", "a red square", "--store", str(store), "--model", MODEL, "-k", "3"]
    for name, looks_like in (("r.html", "<!doctype html>"), ("r.json", '{"query"'), ("r.txt", "/")):
        assert cli(*base, "-o", tmp_path / name).exit_code == 0
        assert (tmp_path / name).read_text().startswith(looks_like)
    assert cli(*base, "-f", "table", "-o", tmp_path / "table.txt").exit_code == 0
    table = (tmp_path / "table.txt").read_text()
    assert "score" in table and table.count("\n") > 4 and "\x1b" not in table


def test_bidi_and_invisible_characters_in_names_are_shown_escaped(tmp_path):
    spoof = make_image(tmp_path / "photos" / "invoice\u202egnp.png", seed=1)
    (tmp_path / "photos" / "broken\u200b.png").write_bytes(b"not an image")
    store = tmp_path / "store"
    indexed = cli("index", tmp_path / "photos", "-m", MODEL, "--store", store)
    assert "broken\\u200b.png" in indexed.stderr and "\u200b" not in indexed.stderr
    shown = cli("query", spoof, "--store", store, "-f", "table")
    assert shown.exit_code == 0 and "invoice\\u202egnp.png" in shown.stdout
    assert "\u202e" not in shown.stdout
    exact = cli("query", spoof, "--store", store, "-f", "paths")
    assert str(spoof) in exact.stdout.split("\n")  # `paths` stays byte for byte


def test_a_store_without_vectors_says_so_before_loading_any_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    empty = tmp_path / "photos"
    empty.mkdir()
    assert cli("index", empty, "--store", tmp_path / "store", "-m", MODEL).exit_code == 0
    result = cli("query", "a dog", "--store", tmp_path / "store")  # the default model
    assert result.exit_code == 1 and "no indexed images yet" in result.stderr
    assert "download" not in result.stderr.lower() and "offline" not in result.stderr.lower()
