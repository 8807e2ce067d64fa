"""Dataset sources on real files: WebDataset tar shards and list files (CSV, JSONL) of
paths and URLs, the URLs served by a real HTTP server on loopback."""

from __future__ import annotations

import functools
import io
import json
import os
import sqlite3
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest
from helpers import index, make_image, serving

from clipsearch.images.items import member_key, read_bytes, split_member
from clipsearch.images.records import list_items
from clipsearch.images.shards import shard_items
from clipsearch.indexing.indexer import Indexer, IndexOptions
from clipsearch.library import Library
from clipsearch.query.render import as_html
from clipsearch.query.search import Filters
from clipsearch.storage.catalog import Catalog
from clipsearch.storage.store import Store


def write_shard(path, samples: dict[str, bytes]):
    """A tar shard of the given members (name -> bytes), in order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in samples.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def png_bytes(tmp_path, seed: int) -> bytes:
    return make_image(tmp_path / "made" / f"{seed}.png", seed=seed).read_bytes()


def sample(tmp_path, stem: str, seed: int, caption: str | None = None) -> dict[str, bytes]:
    out = {f"{stem}.png": png_bytes(tmp_path, seed)}
    if caption is not None:
        out[f"{stem}.txt"] = caption.encode()
        out[f"{stem}.json"] = json.dumps({"seed": seed}).encode()
    return out


def rows(store):
    db = sqlite3.connect(store / "catalog.db")
    out = db.execute("select path, state, error, meta from files order by path").fetchall()
    db.close()
    return out


@pytest.fixture
def shards(tmp_path):
    folder = tmp_path / "shards"
    write_shard(
        folder / "00000.tar",
        {**sample(tmp_path, "a", 1, "a red square"), **sample(tmp_path, "b", 2, "blue")},
    )
    write_shard(folder / "00001.tar", {**sample(tmp_path, "c", 3), "d.png": b"\x89PNG broken"})
    return folder


def test_each_image_of_a_shard_is_an_item_with_its_sidecars(tmp_path, shards, tiny):
    report = index(tmp_path / "store", [shards], tiny)
    assert (report.added, report.failed) == (3, 1)
    found = rows(tmp_path / "store")
    keys = [f"{shards}/00000.tar::a.png", f"{shards}/00000.tar::b.png"]
    keys += [f"{shards}/00001.tar::c.png", f"{shards}/00001.tar::d.png"]
    assert [r[0] for r in found] == keys
    assert json.loads(found[0][3]) == {"caption": "a red square", "json": {"seed": 1}}
    assert found[3][1] == "failed" and "not an image" in found[3][2]


def test_a_members_vector_equals_the_same_image_as_a_file(tmp_path, shards, tiny):
    index(tmp_path / "store", [shards], tiny)
    catalog = Catalog(f"sqlite:///{tmp_path / 'store' / 'catalog.db'}")
    row = catalog.files.named([f"{shards}/00000.tar::a.png"])[f"{shards}/00000.tar::a.png"]
    _, member = catalog.vectors.get(catalog.models.find(tiny.digest).id, [row.id])
    direct = tiny.encode_images([str(tmp_path / "made" / "1.png")])
    np.testing.assert_allclose(member, direct, atol=1e-5)


def test_unchanged_shards_are_not_opened_again(tmp_path, shards, tiny):
    index(tmp_path / "store", [shards], tiny)
    shard = shards / "00000.tar"
    st = shard.stat()
    shard.write_bytes(b"\0" * st.st_size)  # unreadable now, but the same size and mtime
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    report = index(tmp_path / "store", [shards], tiny)
    assert (report.added, report.failed, report.removed, report.unchanged) == (0, 0, 0, 4)
    assert not report.problems


def test_a_changed_shard_is_read_again_and_a_removed_one_forgotten(tmp_path, shards, tiny):
    index(tmp_path / "store", [shards], tiny)
    write_shard(
        shards / "00000.tar", {**sample(tmp_path, "a", 1, "red"), **sample(tmp_path, "e", 5)}
    )
    (shards / "00001.tar").unlink()
    report = index(tmp_path / "store", [shards], tiny)
    assert [r[0].split("/")[-1] for r in rows(tmp_path / "store")] == [
        "00000.tar::a.png",
        "00000.tar::e.png",
    ]
    assert report.removed == 3  # b.png went from its shard; c and d with theirs
    assert json.loads(rows(tmp_path / "store")[0][3])["caption"] == "red"


def test_a_shard_that_is_no_tar_is_a_problem_and_keeps_its_items(tmp_path, shards, tiny):
    index(tmp_path / "store", [shards], tiny)
    (shards / "00001.tar").write_bytes(b"garbage, and a new size")
    report = index(tmp_path / "store", [shards], tiny)
    (problem,) = report.problems
    assert "cannot read as a tar shard" in problem.reason and "left as they were" in problem.reason
    assert len(rows(tmp_path / "store")) == 4 and report.removed == 0


def test_search_within_a_shard_and_the_keys_in_results(tmp_path, shards, tiny):
    index(tmp_path / "store", [shards], tiny)
    within = Filters(folders=[str(shards / "00000.tar")])
    with Library(tmp_path / "store") as lib:
        inside = lib.search("a square", k=10, model="random:tiny", filters=within)
        everywhere = lib.search("a square", k=10, model="random:tiny")
    assert {split_member(r.path)[1] for r in inside.results} == {"a.png", "b.png"}
    assert len(everywhere.results) == 3


def test_forget_a_shard(tmp_path, shards, tiny):
    index(tmp_path / "store", [shards], tiny)
    with Library(tmp_path / "store") as lib:
        assert lib.forget([shards / "00001.tar"]) == 2
    assert len(rows(tmp_path / "store")) == 2


@pytest.fixture
def web(tmp_path):
    """A real HTTP server on loopback serving tmp_path/web."""
    root = tmp_path / "web"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_a_list_file_of_paths_and_urls(tmp_path, web, tiny):
    root, url = web
    make_image(root / "far.png", seed=7)
    make_image(tmp_path / "list" / "near.png", seed=8)
    listing = tmp_path / "list" / "items.csv"
    listing.write_text(
        "url,caption,license\n"
        f"{url}/far.png,far away,cc-by\n"
        "near.png,close by,\n"
        f"{url}/missing.png,gone,\n"
        "nowhere.png,not here,\n"
    )
    report = index(tmp_path / "store", [listing], tiny)
    assert (report.added, report.failed) == (2, 2), report.failures
    found = {r[0]: r for r in rows(tmp_path / "store")}
    assert json.loads(found[f"{url}/far.png"][3]) == {"caption": "far away", "license": "cc-by"}
    assert found[f"{url}/missing.png"][1] == "failed"
    assert "404" in found[f"{url}/missing.png"][2]
    assert found[str(tmp_path / "list" / "nowhere.png")][1] == "failed"
    make_image(root / "missing.png", seed=9)  # the server has it now
    again = index(tmp_path / "store", [listing], tiny)
    assert (again.added, again.updated, again.failed, again.unchanged) == (0, 1, 0, 3)
    assert {r[1] for r in rows(tmp_path / "store") if r[0].startswith("http")} == {"ok"}


def test_a_list_names_no_file_through_a_file_url(tmp_path, tiny):
    make_image(tmp_path / "private.png", seed=1)
    listing = tmp_path / "items.csv"
    listing.write_text(f"url\nfile://{tmp_path}/private.png\n")
    report = index(tmp_path / "store", [listing], tiny)
    assert report.failed == 1 and "file:// URLs are not read" in report.failures[0][1]


def test_a_list_of_shards_and_a_list_inside_an_indexed_folder(tmp_path, shards, tiny):
    listing = shards / "list.csv"
    listing.write_text("path\n00000.tar\n")
    first = index(tmp_path / "store", [shards, listing], tiny)
    again = index(tmp_path / "store", [shards, listing], tiny)
    assert first.added == 3 and (again.added, again.failed, again.unchanged) == (0, 0, 4)


def test_a_shard_left_half_done_is_finished_by_the_next_run(tmp_path, tiny):
    write_shard(tmp_path / "s" / "0.tar", {f"{i}.png": png_bytes(tmp_path, i) for i in range(6)})

    class Stop(Exception):
        pass

    def stop_after_the_first_batch(done, total):
        raise Stop

    with pytest.raises(Stop), Store(tmp_path / "store") as store:
        options = IndexOptions(workers=1, batch_size=2)
        Indexer(store, tiny, options).run([str(tmp_path / "s")], stop_after_the_first_batch)
    assert len(rows(tmp_path / "store")) == 2
    report = index(tmp_path / "store", [tmp_path / "s"], tiny)
    assert (report.added, report.unchanged) == (4, 2)
    assert len(rows(tmp_path / "store")) == 6
    assert index(tmp_path / "store", [tmp_path / "s"], tiny).unchanged == 6


def test_forgetting_a_member_makes_its_shard_read_again(tmp_path, shards, tiny):
    index(tmp_path / "store", [shards], tiny)
    with Library(tmp_path / "store") as lib:
        assert lib.forget([f"{shards}/00000.tar::a.png"]) == 1
    report = index(tmp_path / "store", [shards], tiny)
    assert report.added == 1 and len(rows(tmp_path / "store")) == 4


def test_members_read_from_many_threads_at_once_are_whole(tmp_path):
    samples = {f"{i}.png": png_bytes(tmp_path, i) for i in range(8)}
    shard = str(write_shard(tmp_path / "s.tar", samples))
    with ThreadPoolExecutor(8) as pool:
        read = list(pool.map(lambda n: read_bytes(member_key(shard, n)), list(samples) * 20))
    assert read == list(samples.values()) * 20


def test_a_shard_key_splits_after_the_tar_whatever_the_names_hold():
    assert split_member("/a::b/x.tar::in::side.png") == ("/a::b/x.tar", "in::side.png")
    assert split_member("/a/x.tar::") is None and split_member("/a/x.png") is None


def test_a_jsonl_list_names_its_image_column(tmp_path, tiny):
    make_image(tmp_path / "a.png", seed=1)
    listing = tmp_path / "items.jsonl"
    listing.write_text(json.dumps({"image": "a.png", "text": "a thing", "n": 3}) + "\n")
    assert list_items(str(listing))[0].meta == {"caption": "a thing", "n": 3}
    report = index(tmp_path / "store", [listing], tiny)
    assert report.added == 1


def test_shard_items_pair_sidecars_by_sample_name(tmp_path):
    shard = write_shard(
        tmp_path / "s.tar",
        {"x/1.jpg": b"j", "x/1.txt": b"one", "x/1.seg.png": b"p", "x/2.png": b"q"},
    )
    items = {split_member(i.key)[1]: i.meta for i in shard_items(str(shard))}
    assert items == {
        "x/1.jpg": {"caption": "one"},
        "x/1.seg.png": {"caption": "one"},
        "x/2.png": {},
    }


def test_the_server_and_the_gallery_show_a_shards_images(tmp_path, shards, tiny):
    index(tmp_path / "store", [shards], tiny)
    with serving(tmp_path / "store") as url:
        found = httpx.post(f"{url}/api/v1/search", json={"query": "red", "k": 3}).json()
        first = found["items"][0]
        assert split_member(first["path"]) is not None
        image = httpx.get(url + first["image_url"])
        thumb = httpx.get(url + first["thumb_url"])
    seed = {"a.png": 1, "b.png": 2, "c.png": 3}[split_member(first["path"])[1]]
    assert image.status_code == 200 and image.content == png_bytes(tmp_path, seed)
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    with Library(tmp_path / "store") as lib:
        answer = lib.search("red", k=3, model="random:tiny")
    page = as_html("red", "random:tiny", answer.results)
    assert page.count("data:image/jpeg;base64,") == 3


def test_a_parquet_list(tmp_path, tiny):
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed")
    import pyarrow as pa

    make_image(tmp_path / "a.png", seed=1)
    make_image(tmp_path / "b.png", seed=2)
    table = pa.table({"path": ["a.png", "b.png"], "caption": ["one", "two"], "w": [1, 2]})
    pq.write_table(table, tmp_path / "items.parquet")
    report = index(tmp_path / "store", [tmp_path / "items.parquet"], tiny)
    assert report.added == 2
    assert json.loads(rows(tmp_path / "store")[1][3]) == {"caption": "two", "w": 2}


def test_query_in_a_shard_prints_its_keys(tmp_path, shards, tiny, monkeypatch):
    from typer.testing import CliRunner

    from clipsearch.cli import app

    index(tmp_path / "store", [shards], tiny)
    monkeypatch.chdir(tmp_path)
    args = ["query", "red", "--store", "store", "--in", "shards/00000.tar", "-f", "paths"]
    result = CliRunner().invoke(app, [*args, "-m", "random:tiny"])
    assert result.exit_code == 0, result.output
    assert sorted(result.stdout.split()) == [
        f"{shards}/00000.tar::a.png",
        f"{shards}/00000.tar::b.png",
    ]


def test_the_server_sends_the_browser_to_a_listed_url(tmp_path, web, tiny):
    root, url = web
    make_image(root / "far.png", seed=7)
    listing = tmp_path / "items.csv"
    listing.write_text(f"url\n{url}/far.png\n")
    index(tmp_path / "store", [listing], tiny)
    with serving(tmp_path / "store") as server:
        answer = httpx.post(f"{server}/api/v1/search", json={"query": "x", "k": 1}).json()
        (found,) = answer["items"]
        image = httpx.get(server + found["image_url"])
        thumb = httpx.get(server + found["thumb_url"])
    assert image.status_code == thumb.status_code == 302
    assert image.headers["location"] == thumb.headers["location"] == f"{url}/far.png"


def test_index_and_train_read_a_shards_samples_alike(tmp_path):
    """One reader: an image pairs with the sidecars of its sample (the name up to the first
    dot), `.txt` or `.caption` its caption, for `index` and `train` alike."""
    from clipsearch.training.data import load_pairs

    shard = write_shard(
        tmp_path / "s" / "0.tar",
        {
            "a.png": png_bytes(tmp_path, 1),
            "a.txt": b"a red square",
            "b.seg.png": png_bytes(tmp_path, 2),
            "b.caption": b"a blue mask",
            "c.png": png_bytes(tmp_path, 3),  # no caption: an item, not a training row
            "d.heic": b"\x00\x00\x00\x18ftypheic",  # no decoder without an extra: no row
            "d.txt": b"a phone photo",
        },
    )
    captioned = {i.key: i.meta["caption"] for i in shard_items(str(shard)) if i.meta}
    assert captioned.pop(f"{shard}::d.heic") == "a phone photo"
    assert {p.image: p.caption for p in load_pairs(str(shard)).rows} == captioned
    assert sorted(captioned.values()) == ["a blue mask", "a red square"]


def test_a_caption_that_is_not_utf8_leaves_its_image_indexed_and_its_row_unusable(tmp_path, tiny):
    from clipsearch.images.records import DataError
    from clipsearch.training.data import load_pairs

    shard = write_shard(
        tmp_path / "s" / "0.tar",
        {
            "a.png": png_bytes(tmp_path, 1),
            "a.txt": "café".encode("latin-1"),
            "b.png": png_bytes(tmp_path, 2),
            "b.txt": b"blue",
        },
    )
    items = shard_items(str(shard))
    assert [(i.meta, i.unreadable) for i in items] == [({}, ("a.txt",)), ({"caption": "blue"}, ())]
    assert index(tmp_path / "store", [shard], tiny).added == 2
    pairs = load_pairs(str(shard), max_bad_fraction=0.5)
    assert [p.caption for p in pairs.rows] == ["blue"] and pairs.skipped == 1
    with pytest.raises(DataError, match="a.png: caption not UTF-8"):
        load_pairs(str(shard))  # one row in two unusable: past the 1% allowed


class EndlessHandler(QuietHandler):
    """Answers every GET with a body that never ends, and no Content-Length."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        chunk = b"\0" * 65536
        try:
            while True:
                self.wfile.write(chunk)
        except OSError:
            pass


def test_a_list_of_devices_fifos_and_endless_urls_is_read_within_bounds(
    tmp_path, tiny, monkeypatch
):
    monkeypatch.setenv("CLIPSEARCH_MAX_ITEM_MB", "2")
    server = ThreadingHTTPServer(("127.0.0.1", 0), EndlessHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.mkfifo(tmp_path / "pipe.png")
    make_image(tmp_path / "good.png", seed=3)
    make_image(tmp_path / "big.png", size=(1600, 1200), seed=4, compress_level=0)
    listing = tmp_path / "items.csv"
    listing.write_text(
        "url\n/dev/zero\npipe.png\ngood.png\nbig.png\n"
        f"http://127.0.0.1:{server.server_address[1]}/endless.png\n"
    )
    try:
        report = index(tmp_path / "store", [listing], tiny, trust_lists=True)  # /dev/zero
    finally:
        server.shutdown()
    assert (report.added, report.failed) == (1, 4), report.failures
    reasons = {os.path.basename(path): why for path, why in report.failures}
    assert "not a regular file" in reasons["zero"] and "not a regular file" in reasons["pipe.png"]
    assert "CLIPSEARCH_MAX_ITEM_MB" in reasons["endless.png"]
    assert "more than the 2 MB" in reasons["big.png"]


def test_a_shard_member_over_the_limit_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPSEARCH_MAX_ITEM_MB", "1")
    shard = write_shard(tmp_path / "a.tar", {"big.png": b"\0" * (2 * 2**20), "s.png": b"x"})
    with pytest.raises(OSError, match="more than the 1 MB"):
        read_bytes(member_key(str(shard), "big.png"))
    assert read_bytes(member_key(str(shard), "s.png")) == b"x"


def test_a_list_reaches_only_files_in_its_own_folder_unless_trusted(tmp_path, tiny):
    make_image(tmp_path / "private" / "secret.png", seed=1)
    make_image(tmp_path / "lists" / "mine.png", seed=2)
    make_image(tmp_path / "lists" / "sub" / "deeper.png", seed=3)
    (tmp_path / "lists" / "link.png").symlink_to(tmp_path / "private" / "secret.png")
    listing = tmp_path / "lists" / "items.csv"
    listing.write_text(
        "url\nmine.png\nsub/deeper.png\n../private/secret.png\n"
        f"{tmp_path}/private/secret.png\nlink.png\nlocal://{tmp_path}/private/secret.png\n"
    )
    report = index(tmp_path / "store", [listing], tiny)
    assert report.added == 2
    outside = [p.path for p in report.problems if "outside the list's folder" in p.reason]
    assert len(outside) == 3 and all("secret" in p or "link" in p for p in outside)
    assert report.failed == 1 and "local:// URLs are not read" in report.failures[0][1]
    trusted = index(tmp_path / "trusted", [listing], tiny, trust_lists=True)
    assert trusted.added == 4 and trusted.failed == 1  # secret.png, named twice, once
