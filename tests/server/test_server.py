"""`clipsearch serve` over real HTTP: a real store (SQLite catalog, FAISS, generated images,
a tiny random model), a real uvicorn server on loopback, requests from a real client."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from helpers import (
    camera_photo,
    make_image,
    photos_with_copies,
    serving,
    serving_watched,
    sign,
)
from PIL import Image
from typer.testing import CliRunner

from clipsearch import Library
from clipsearch.cli import app
from clipsearch.server.auth import COOKIE
from clipsearch.server.body import MAX_UPLOAD

MODEL = "random:tiny"


def search(base, **body):
    return httpx.post(f"{base}/api/v1/search", json=body, timeout=60)


def ids(response) -> list[int]:
    return [item["id"] for item in response.json()["items"]]


def test_health_status_and_the_openapi_schema(base):
    assert httpx.get(f"{base}/health").json() == {"status": "ok"}
    status = httpx.get(f"{base}/api/v1/status").json()
    assert status["files"]["ok"] == 13 and status["models"][0]["vectors"] == 13
    schema = httpx.get(f"{base}/openapi.json").json()
    assert {"/api/v1/search", "/api/v1/similar/{file_id}", "/api/v1/embed"} <= set(schema["paths"])


def test_search_answers_as_the_command_line_does(base, photos):
    body = {
        "query": "a red square + a blue circle - 2:a dog",
        "k": 5,
        "in": [str(photos / "photos" / "home")],
    }
    response = search(base, **body)
    assert response.status_code == 200
    data = response.json()
    assert set(data["timings_ms"]) == {"embed", "search", "hydrate"}
    assert data["query"] == "'a red square' + 'a blue circle' - 2×'a dog'"
    cli = CliRunner().invoke(
        app,
        ["query", "a red square", "+", "a blue circle", "-", "2:a dog", "-k", "5", "--in",
         str(photos / "photos" / "home"), "--store", str(photos / "store"), "-m", MODEL,
         "-f", "json", "--precision", "fp32"],
    )  # fmt: skip
    expected = [r["path"] for r in json.loads(cli.stdout)["results"]]
    assert [item["path"] for item in data["items"]] == expected
    assert all("/home/" in item["path"] for item in data["items"])
    item = data["items"][0]
    assert (
        item["thumb_url"] == f"/thumb/{item['id']}" and item["image_url"] == f"/image/{item['id']}"
    )


def test_paging_is_stable(base):
    whole = ids(search(base, query="a photo", k=10))
    pages = ids(search(base, query="a photo", k=5)) + ids(
        search(base, query="a photo", k=5, offset=5)
    )
    assert pages == whole and len(set(pages)) == 10


def test_search_by_uploaded_image_and_by_id(base, photos):
    data = (photos / "photos" / "trip" / "04.png").read_bytes()
    files = {"image": ("04.png", data, "image/png")}
    response = httpx.post(f"{base}/api/v1/search", data={"request": '{"k": 3}'}, files=files)
    assert response.status_code == 200, response.text
    top = response.json()["items"][0]
    assert top["path"].endswith("trip/04.png") and top["score"] > 0.999
    similar = httpx.get(f"{base}/api/v1/similar/{top['id']}", params={"k": 3}).json()
    assert top["id"] not in [i["id"] for i in similar["items"]] and len(similar["items"]) == 3
    mixed = search(base, query="a red square", similar_to=top["id"], k=3)
    assert mixed.status_code == 200 and "image #" in mixed.json()["query"]


def test_embed_text_and_image(base, photos, tiny):
    text = httpx.post(f"{base}/api/v1/embed", json={"text": ["a cat"]}).json()
    assert text["dim"] == 64 and len(text["vectors"]) == 1
    cosine = sum(a * b for a, b in zip(text["vectors"][0], tiny.encode_text(["a cat"])[0]))
    assert cosine > 0.998  # the server's text tower may be int8 or fp16 (the store's check)
    files = {"image": ("a.png", (photos / "photos" / "home" / "01.png").read_bytes(), "image/png")}
    image = httpx.post(f"{base}/api/v1/embed", files=files).json()
    assert len(image["vectors"][0]) == 64


def test_thumbnails_are_cached_in_the_store_with_etags(base, photos):
    first = httpx.get(f"{base}/thumb/13", params={"size": 128})
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(first.content)).size) == 128
    assert list((photos / "store" / "thumbs").glob("13-128-*.jpg"))
    again = httpx.get(
        f"{base}/thumb/13", params={"size": 128}, headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304
    original = httpx.get(f"{base}/image/13")
    assert original.headers["content-type"] == "image/jpeg"
    assert original.content == (photos / "photos" / "trip" / "big.jpg").read_bytes()


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("post", "/api/v1/search", {"query": ""}, 400),
        ("post", "/api/v1/search", {"query": "x", "after": "yesterday"}, 400),
        ("post", "/api/v1/search", {"query": "x", "k": 0}, 400),
        ("post", "/api/v1/search", ["not", "an", "object"], 400),
        ("post", "/api/v1/search", {"similar_to": 999}, 404),
        ("get", "/api/v1/similar/999", None, 404),
        ("get", "/thumb/999", None, 404),
        ("get", "/thumb/1?size=100000", None, 400),
        ("get", "/image/999", None, 404),
        ("get", "/nothing/here", None, 404),
        ("get", "/image/99999999999999999999", None, 400),
        ("get", "/thumb/99999999999999999999", None, 400),
        ("get", "/api/v1/similar/99999999999999999999", None, 400),
        ("get", "/api/v1/similar/1?k=0", None, 400),
        ("post", "/api/v1/search", {"similar_to": 99999999999999999999}, 400),
        ("post", "/api/v1/search", r'{"query": "x", "ext": ["\udcff"]}', 400),  # JSON text
        ("post", "/api/v1/search", r'{"query": "x", "in": ["\udcff"]}', 400),
        ("post", "/api/v1/search", {"query": "x", "after": "9999-12-31T23:59:59-14:00"}, 400),
        ("post", "/api/v1/search", {"query": "x", "sort": "name"}, 400),
    ],
)
def test_errors_are_json_with_the_right_status(base, method, path, body, status):
    if isinstance(body, str):
        body = {"content": body, "headers": {"content-type": "application/json"}}
    else:
        body = {"json": body}
    response = httpx.request(method, f"{base}{path}", **body)
    assert response.status_code == status
    assert set(response.json()) == {"error"} and "Traceback" not in response.text


def test_a_range_of_year_one_is_empty_not_an_error(base):
    response = search(base, query="x", after="0001", before="0001")
    assert response.status_code == 200 and response.json()["items"] == []
    assert search(base, query="x", after="0001", before="9999").json()["items"]


def test_the_schema_says_what_errors_look_like(base):
    schema = httpx.get(f"{base}/openapi.json").json()
    for path in schema["paths"].values():
        for operation in path.values():
            assert "422" not in operation["responses"]
            assert "ErrorResponse" in json.dumps(operation["responses"]["400"])


def test_a_real_failure_is_a_500_that_the_log_shows(photos, monkeypatch, capfd):
    monkeypatch.setenv("CLIPSEARCH_FAULT", "serve-search:boom=raise")
    with serving(photos / "store") as url:
        response = search(url, query="boom")
        assert search(url, query="calm").status_code == 200
    assert response.status_code == 500 and set(response.json()) == {"error"}
    assert "fault injected by CLIPSEARCH_FAULT" in capfd.readouterr().err


def test_words_find_files_by_name_and_folder_and_say_which(base):
    """The search box looks up the words files carry beside the vectors (`mode` hybrid by
    default): a file named `big.jpg` is first for "big", and says why."""
    top = search(base, query="big", k=3).json()["items"][0]
    assert top["path"].endswith("/trip/big.jpg") and top["matched"] == {"name": ["big"]}
    trip = search(base, query="folder:trip", mode="text", k=20).json()["items"]
    assert len(trip) == 7 and all("/trip/" in item["path"] for item in trip)
    assert all(item["matched"] == {"folder": ["trip"]} for item in trip)
    vector = search(base, query="big", mode="vector", k=13).json()["items"]
    assert all(item["matched"] is None for item in vector)
    refused = search(base, query="big", mode="fuzzy")
    assert refused.status_code == 400 and set(refused.json()) == {"error"}


def test_the_text_read_in_an_image_comes_with_its_boxes(tmp_path):
    pytest.importorskip("rapidocr_onnxruntime", reason="the ocr extra is not installed")
    from clipsearch.core.config import IndexOptions

    sign(tmp_path / "photos" / "a.jpg", ["EXIT", "Gate 12"], seed=1)
    make_image(tmp_path / "photos" / "b.png", seed=2)
    with Library(tmp_path / "store", create=True) as lib:
        lib.index([tmp_path / "photos"], model=MODEL, options=IndexOptions(ocr=True))
        ids = {Path(r.path).name: r.file_id for r in lib.search("x", k=2).results}
    with serving(tmp_path / "store") as url:
        read = httpx.get(f"{url}/api/v1/text/{ids['a.jpg']}").json()
        assert read["read"] and [line["text"] for line in read["lines"]] == ["EXIT", "Gate 12"]
        assert all(len(line["box"]) == 4 and line["confidence"] > 0.5 for line in read["lines"])
        assert httpx.get(f"{url}/api/v1/text/{ids['b.png']}").json() == {
            "id": ids["b.png"], "read": True, "lines": []
        }  # fmt: skip
        assert httpx.get(f"{url}/api/v1/text/999999").status_code == 404


def test_results_sorted_by_date_and_whether_there_are_more(base, photos):
    everything = search(base, query="a photo", k=13).json()
    assert everything["more"] is False and len(everything["items"]) == 13
    first = search(base, query="a photo", k=5).json()
    assert first["more"] is True
    newest = search(base, query="a photo", k=13, sort="-date").json()["items"]
    dates = [item["date"] for item in newest]
    assert dates == sorted(dates, reverse=True)
    pages = [search(base, query="a photo", k=5, offset=o, sort="date").json() for o in (0, 5, 10)]
    paged = [item["id"] for page in pages for item in page["items"]]
    assert paged == [item["id"] for item in reversed(newest)] or sorted(paged) == sorted(
        item["id"] for item in newest
    )
    assert [p["more"] for p in pages] == [True, True, False]


def test_a_query_cut_to_77_tokens_says_so_and_the_server_keeps_nothing(base):
    data = search(base, query=" ".join(["word"] * 100), k=1).json()
    assert len(data["warnings"]) == 1 and "truncated" in data["warnings"][0]
    assert search(base, query="a short one", k=1).json()["warnings"] == []


def test_images_that_cannot_be_used(base, tmp_path):
    garbage = {"image": ("x.png", b"not an image at all", "image/png")}
    response = httpx.post(f"{base}/api/v1/search", files=garbage)
    assert response.status_code == 422 and "x.png" in response.json()["error"]
    bomb = io.BytesIO()
    Image.new("1", (20_000, 10_000)).save(bomb, "PNG")
    response = httpx.post(f"{base}/api/v1/search", files={"image": ("bomb.png", bomb.getvalue())})
    assert response.status_code == 413 and "decompression bomb" in response.json()["error"]
    huge = {"image": ("huge.png", b"\0" * (MAX_UPLOAD + 1), "image/png")}
    assert httpx.post(f"{base}/api/v1/search", files=huge, timeout=60).status_code == 413


@pytest.mark.parametrize(
    "path",
    [
        "/thumb/../../etc/passwd",
        "/thumb/..%2F..%2Fetc%2Fpasswd",
        "/image/%2e%2e/%2e%2e/etc/passwd",
        "/image/-1",
        "/image/1.5",
        "/image//etc/passwd",
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/thumb/1?size=64&path=/etc/passwd",
    ],
)
def test_no_request_reads_a_file_the_catalog_does_not_serve(base, path):
    response = httpx.get(f"{base}{path}")
    assert b"root:" not in response.content and b"import" not in response.content
    assert response.status_code in (200, 400, 404) and (
        response.status_code != 200 or response.headers["content-type"] == "image/jpeg"
    )


def test_a_query_string_is_never_read_as_a_path(base, photos):
    indexed = str(photos / "photos" / "trip" / "04.png")
    data = search(base, query=indexed, k=1).json()
    assert data["query"] == repr(indexed)  # a text term, not the image at that path


def test_a_link_planted_with_the_same_size_and_time_is_not_served(tmp_path):
    make_image(tmp_path / "photos" / "a.png", seed=1)
    with Library(tmp_path / "store", create=True) as lib:
        lib.index([tmp_path / "photos"], model=MODEL)
    indexed = tmp_path / "photos" / "a.png"
    secret = tmp_path / "secret.png"
    secret.write_bytes(indexed.read_bytes())  # the same size
    held = indexed.stat()
    os.utime(secret, ns=(held.st_atime_ns, held.st_mtime_ns))  # and the same time
    indexed.unlink()
    indexed.symlink_to(secret)
    assert os.stat(indexed).st_mtime_ns == held.st_mtime_ns
    with serving(tmp_path / "store") as url:
        assert httpx.get(f"{url}/image/1").status_code == 404
        assert httpx.get(f"{url}/thumb/1").status_code == 404


def test_many_requests_for_one_new_thumbnail_all_get_it(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    make_image(tmp_path / "photos" / "a.jpg", size=(1600, 1200), seed=3)
    with Library(tmp_path / "store", create=True) as lib:
        lib.index([tmp_path / "photos"], model=MODEL)
    with serving(tmp_path / "store") as url, ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(lambda _: httpx.get(f"{url}/thumb/1", timeout=60), range(24)))
    assert [a.status_code for a in answers] == [200] * 24
    assert len({a.content for a in answers}) == 1
    assert not list((tmp_path / "store" / "thumbs").glob("*.tmp"))


def test_a_store_that_cannot_keep_thumbnails_serves_them_all_the_same(tmp_path):
    make_image(tmp_path / "photos" / "a.png", size=(300, 200), seed=3)
    with Library(tmp_path / "store", create=True) as lib:
        lib.index([tmp_path / "photos"], model=MODEL)
    (tmp_path / "store" / "thumbs").write_text("not a folder: thumbs/ cannot be made")
    with serving(tmp_path / "store") as url:
        response = httpx.get(f"{url}/thumb/1", params={"size": 64})
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
        assert max(Image.open(io.BytesIO(response.content)).size) == 64


def test_an_indexed_file_replaced_by_a_link_elsewhere_is_not_served(tmp_path):
    secret = tmp_path / "secret.png"
    make_image(secret, seed=99)
    make_image(tmp_path / "photos" / "a.png", seed=1)
    with Library(tmp_path / "store", create=True) as lib:
        lib.index([tmp_path / "photos"], model=MODEL)
    (tmp_path / "photos" / "a.png").unlink()
    (tmp_path / "photos" / "a.png").symlink_to(secret)
    with serving(tmp_path / "store") as url:
        assert httpx.get(f"{url}/image/1").status_code == 404
        assert httpx.get(f"{url}/thumb/1").status_code == 404


def test_files_indexed_or_forgotten_by_another_process_meanwhile(tmp_path):
    for i in range(4):
        make_image(tmp_path / "photos" / f"{i}.png", seed=i)
    with Library(tmp_path / "store", create=True) as lib:
        lib.index([tmp_path / "photos"], model=MODEL)
    with serving(tmp_path / "store") as url:
        assert len(ids(search(url, query="a photo", k=10))) == 4
        make_image(tmp_path / "photos" / "new.png", seed=40)
        runner = CliRunner()
        store = ["--store", str(tmp_path / "store")]
        assert (
            runner.invoke(app, ["index", str(tmp_path / "photos"), "-m", MODEL, *store]).exit_code
            == 0
        )
        found = search(url, query="a photo", k=10).json()["items"]
        assert len(found) == 5 and any(i["path"].endswith("new.png") for i in found)
        assert (
            runner.invoke(app, ["forget", str(tmp_path / "photos" / "0.png"), *store]).exit_code
            == 0
        )
        assert runner.invoke(app, ["rebuild", *store]).exit_code == 0  # the log is trimmed
        left = search(url, query="a photo", k=10).json()["items"]
        assert len(left) == 4 and not any(i["path"].endswith("/0.png") for i in left)


def test_a_store_being_changed_under_it_is_a_503(tmp_path):
    make_image(tmp_path / "photos" / "a.png")
    with Library(tmp_path / "store", create=True) as lib:
        lib.index([tmp_path / "photos"], model=MODEL)
    with serving(tmp_path / "store") as url:
        db = sqlite3.connect(tmp_path / "store" / "catalog.db")
        db.execute("alter table files rename to files_being_migrated")
        db.commit()
        response = search(url, query="a photo", k=1)
        assert response.status_code == 503 and "try again" in response.json()["error"]
        db.execute("alter table files_being_migrated rename to files")
        db.commit()
        assert search(url, query="a photo", k=1).status_code == 200


def test_with_a_key_only_its_holders_get_in(photos):
    with serving(photos / "store", api_key="s3cret") as url:
        assert httpx.get(f"{url}/health").status_code == 200
        assert httpx.get(f"{url}/").status_code == 200  # the page, which asks for the key
        for path in ("/api/v1/status", "/thumb/1", "/image/1", "/api/v1/status?api_key=s3cret"):
            assert httpx.get(f"{url}{path}").status_code == 401
        wrong = httpx.get(f"{url}/api/v1/status", headers={"X-API-Key": "s3cre"})
        assert wrong.status_code == 401
        assert httpx.get(f"{url}/api/v1/status", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert httpx.post(f"{url}/api/v1/session", json={"key": "nope"}).status_code == 401
        login = httpx.post(f"{url}/api/v1/session", json={"key": "s3cret"})
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and cookie.startswith(COOKIE)
        assert httpx.get(f"{url}/thumb/1", cookies=login.cookies).status_code == 200


def test_listening_beyond_loopback_needs_a_key(photos, monkeypatch):
    monkeypatch.delenv("CLIPSEARCH_API_KEY", raising=False)
    result = CliRunner().invoke(
        app, ["serve", "--host", "0.0.0.0", "--store", str(photos / "store")]
    )
    assert result.exit_code == 1 and "--api-key" in result.stderr


def test_the_serve_command_answers_and_stops_cleanly(photos):
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clipsearch",
            "serve",
            "--store",
            str(photos / "store"),
            "--port",
            "0",
            "--allowed-host",
            "photos.lan",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CLIPSEARCH_QUERY_LOG": "0"},
    )
    line = proc.stderr.readline()
    url = line.split(" at ")[1].split(" ")[0]
    assert httpx.get(f"{url}health").json() == {"status": "ok"}
    long = httpx.post(f"{url}api/v1/search", json={"query": "word " * 100}, timeout=60)
    assert long.json()["warnings"]  # said to the client, not kept for the shutdown
    named = httpx.get(f"{url}api/v1/status", headers={"host": "photos.lan"})
    assert named.status_code == 200  # --allowed-host
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0
    assert "truncated" not in proc.stderr.read()


def test_serve_watch_finds_a_new_photo_without_a_restart(tmp_path):
    folder = tmp_path / "photos"
    make_image(folder / "old.png", seed=1)
    with serving_watched(tmp_path / "store", folder) as (url, proc):
        deadline = time.time() + 60
        while httpx.get(f"{url}/api/v1/watch").json()["runs"] < 1 and time.time() < deadline:
            time.sleep(0.2)  # the catch-up run
        make_image(folder / "new.png", seed=2)
        while time.time() < deadline:
            state = httpx.get(f"{url}/api/v1/watch").json()
            if state["changed"] == 2:
                break
            time.sleep(0.2)
        assert state["watching"] and state["last_change"] and not state["polling"]
        found = httpx.post(f"{url}/api/v1/search", json={"query": "a photo", "k": 5}).json()
        assert {Path(item["path"]).name for item in found["items"]} == {"old.png", "new.png"}, found
    assert proc.returncode == 0
    assert "Traceback" not in proc.stderr.read()


def test_without_watch_the_server_says_it_is_not_watching(photos):
    with serving(photos / "store") as url:
        assert httpx.get(f"{url}/api/v1/watch").json() == {"watching": False}


def test_the_camera_filter_reaches_the_search(tmp_path):
    camera_photo(tmp_path / "photos" / "canon.jpg", 1, "Canon", "Canon EOS R5")
    camera_photo(tmp_path / "photos" / "nikon.jpg", 2, "NIKON", "D750")
    with Library(tmp_path / "store", create=True) as lib:
        lib.index([tmp_path / "photos"], model=MODEL)
    with serving(tmp_path / "store") as url:
        found = search(url, query="a photo", k=5, camera="eos r5").json()["items"]
        assert [item["path"].rsplit("/", 1)[1] for item in found] == ["canon.jpg"]
        assert search(url, query="a photo", camera="\x1b[2J").status_code == 400


def test_the_place_filter_reaches_the_search_and_results_carry_the_place(tmp_path):
    camera_photo(tmp_path / "photos" / "paris.jpg", 1, "Canon", "EOS R5", (48.8584, 2.2945))
    camera_photo(tmp_path / "photos" / "rome.jpg", 2, "Canon", "EOS R5", (41.8902, 12.4922))
    with Library(tmp_path / "store", create=True) as lib:
        lib.index([tmp_path / "photos"], model=MODEL)
    with serving(tmp_path / "store") as url:
        (item,) = search(url, query="a photo", near="41.89,12.49,5").json()["items"]
        assert item["path"].endswith("rome.jpg") and item["latitude"] == pytest.approx(41.8902)
        assert item["camera"] == "Canon EOS R5"
        answer = search(url, query="a photo", near="41.89")
        assert answer.status_code == 400 and "not a place" in answer.json()["error"]
        groups = httpx.get(f"{url}/api/v1/duplicates", params={"kind": "exact", "near": "0,0"})
        assert groups.status_code == 200 and groups.json()["groups"] == []


def test_duplicates_come_as_groups_with_their_pictures(tmp_path):
    photos_with_copies(tmp_path / "photos")
    with Library(tmp_path / "store", create=True) as lib:
        lib.index([tmp_path / "photos"], model=MODEL)
    with serving(tmp_path / "store") as url:
        exact = httpx.get(f"{url}/api/v1/duplicates", params={"kind": "exact"}).json()
        assert exact["total"] == 1 and exact["more"] is False and exact["threshold"] is None
        (group,) = exact["groups"]
        assert [item["keep"] for item in group["items"]] == [True, False, False]
        assert httpx.get(f"{url}{group['items'][1]['thumb_url']}").status_code == 200
        near = httpx.get(
            f"{url}/api/v1/duplicates", params={"threshold": 0.999999, "limit": 1}
        ).json()
        assert near["kind"] == "near" and len(near["groups"]) == 1
        assert near["more"] == (near["total"] > 1) and near["total"] >= 1
        for bad in ({"kind": "twins"}, {"threshold": 3}, {"camera": "\x1b[2J"}):
            answer = httpx.get(f"{url}/api/v1/duplicates", params=bad)
            assert answer.status_code == 400 and list(answer.json()) == ["error"]
        with Library(tmp_path / "store") as other:  # another process forgets a copy
            other.forget([tmp_path / "photos" / "p0-again.png"])
        again = httpx.get(f"{url}/api/v1/duplicates", params={"kind": "exact"}).json()
        assert len(again["groups"][0]["items"]) == 2  # the groups kept are not served stale
