"""The words each file carries, kept with its row in real SQLite (FTS5) and PostgreSQL
catalogs through real indexing runs: added, renamed, re-read, forgotten; and a store made
before the words table, upgraded."""

from __future__ import annotations

import json
import os
import shutil

import sqlalchemy as sa
from helpers import camera_photo, index, make_image

from clipsearch.storage.catalog_words import caption_of, fts5_match, name_and_folder, words_of
from clipsearch.storage.database import migrate
from clipsearch.storage.store import Store


def test_names_split_where_people_join_words():
    assert words_of("GrandCanyon_2019-07.final") == [
        "GrandCanyon", "Grand", "Canyon", "2019", "07", "final"
    ]  # fmt: skip
    assert words_of("IMG2041") == ["IMG2041", "IMG", "2041"]
    assert words_of("iPhone") == ["iPhone", "i", "Phone"]
    assert words_of("été à Paris") == ["été", "à", "Paris"]
    name, folder = name_and_folder("/home/ann/Pictures/Trips/Italy 2019/roma_colosseum.JPG")
    assert (name, folder) == ("roma colosseum", "Pictures Trips Italy 2019")
    assert name_and_folder("/data/shard-0001.tar::00017/cat_on_mat.jpg") == (
        "cat on mat",
        "data shard 0001 tar",
    )
    assert name_and_folder(os.fsdecode(b"/p/caf\xe9 \xff.png"))[0] == "caf"  # no stray bytes


def test_a_caption_is_every_text_a_dataset_gave():
    meta = {"caption": "a red door", "licence": "CC-BY", "json": {"tags": ["blue", 7]}}
    assert caption_of(json.dumps(meta)) == "a red door CC-BY blue"
    assert caption_of(None) is None and caption_of("{broken") is None


def test_nothing_typed_is_read_as_fts5_syntax():
    match = fts5_match([(None, 'a" OR *', False), ("name", "red NEAR(door)", True)])
    assert match == '("a""" "OR" "*") AND name : ("red NEAR(door)")'


def found(store, *parts) -> set[str]:
    with Store(store) as s:
        ids = s.catalog.words.search(list(parts), 100)
        return {os.path.basename(r.path) for r in s.catalog.files.rows(ids).values()}


def test_words_follow_every_change_to_the_files(tmp_path, tiny):
    """A run's new files are found by their words at once; a renamed one by its new name
    only; a re-read camera by its make; a forgotten one no more."""
    photos = tmp_path / "photos"
    make_image(photos / "GrandCanyon" / "grand-canyon_2019.jpg", seed=1)
    make_image(photos / "beachDay.png", seed=2)
    camera_photo(photos / "IMG_2041.jpg", 4, make="Canon", model="EOS R5")
    listed = tmp_path / "list"
    make_image(listed / "x1.png", seed=3)
    (listed / "items.csv").write_text("path,caption\nx1.png,a red door in Lisbon\n")
    store = tmp_path / "store"
    index(store, [photos, listed / "items.csv"], tiny)

    assert found(store, (None, "canyon", False)) == {"grand-canyon_2019.jpg"}
    assert found(store, ("folder", "grand canyon", True)) == {"grand-canyon_2019.jpg"}
    assert found(store, ("name", "beach day", True)) == {"beachDay.png"}
    assert found(store, (None, "canon r5", False)) == {"IMG_2041.jpg"}
    assert found(store, ("caption", "red door", True)) == {"x1.png"}
    assert found(store, ("caption", "door red", True)) == set()  # a phrase, in its order
    assert found(store, (None, "red lisbon", False), ("camera", "canon", False)) == set()

    os.rename(photos / "beachDay.png", photos / "sunset-walk.png")
    index(store, [photos], tiny)
    assert found(store, (None, "beach", False)) == set()
    assert found(store, (None, "sunset walk", False)) == {"sunset-walk.png"}

    shutil.rmtree(photos / "GrandCanyon")
    index(store, [photos], tiny)
    assert found(store, (None, "canyon", False)) == set()
    with Store(store) as s, s.catalog.read() as session:  # each file kept has words, no other
        held = set(session.scalars(sa.text("SELECT rowid FROM words")))
        files = set(session.scalars(sa.text("SELECT id FROM files WHERE state = 'ok'")))
    assert held == files


def test_a_store_made_before_words_gets_them_when_upgraded(tmp_path, tiny):
    photos = tmp_path / "photos"
    make_image(photos / "old-harbour.png", seed=1)
    store = tmp_path / "store"
    index(store, [photos], tiny)
    url = f"sqlite:///{store / 'catalog.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # back to how the store was at 0006
        for undo in ("DROP TABLE generation", "DROP TABLE words", "DROP TABLE text_lines",
                     "ALTER TABLE files DROP COLUMN text_read",
                     "UPDATE alembic_version SET version_num = '0006'"):  # fmt: skip
            conn.execute(sa.text(undo))
    migrate(engine)
    engine.dispose()
    assert found(store, (None, "harbour", False)) == {"old-harbour.png"}


def test_postgresql_keeps_and_searches_the_same_words(postgres_server, tmp_path, tiny):
    from typer.testing import CliRunner

    from clipsearch.cli import app

    photos = tmp_path / "photos"
    make_image(photos / "GrandCanyon" / "grand-canyon_2019.jpg", seed=1)
    make_image(photos / "red-door.png", seed=2)
    make_image(photos / os.fsdecode(b"caf\xe9 \xff.png"), seed=3)
    runner = CliRunner()
    store = ["--store", str(tmp_path / "store"), "--db", postgres_server()]
    indexed = runner.invoke(app, ["index", str(photos), *store, "-m", "random:tiny",
                                  "--workers", "1"])  # fmt: skip
    assert indexed.exit_code == 0, indexed.output

    def first(*query: str) -> tuple[str, dict | None]:
        answer = runner.invoke(app, ["query", *query, *store, "-f", "json", "-k", "3"])
        assert answer.exit_code == 0, answer.output
        top = json.loads(answer.stdout)["results"][0]
        return os.path.basename(top["path"]), top["matched"]

    assert first("canyon", "--mode", "text") == (
        "grand-canyon_2019.jpg",
        {"name": ["canyon"], "folder": ["canyon"]},
    )
    assert first('name:"red door"') == ("red-door.png", {"name": ["red", "door"]})
    assert first("caf", "--mode", "text")[0] == os.fsdecode(b"caf\xe9 \xff.png")
    missing = runner.invoke(app, ["query", "door red canyon", *store, "--mode", "text"])
    assert missing.exit_code == 0 and "No results" in missing.output
