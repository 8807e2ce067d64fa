"""The catalog schema: migrations forward, refusal of newer schemas, odd paths, WAL."""

from __future__ import annotations

import hashlib
import os
import sqlite3

import numpy as np
import pytest
from sqlalchemy import text

from clipsearch.catalog import SCHEMA_HEAD, Catalog, CatalogError, File, make_engine, migrate


def url(path) -> str:
    return f"sqlite:///{path}"


def test_new_catalog_is_at_head_in_wal_mode(tmp_path):
    catalog = Catalog(url(tmp_path / "c.db"))
    assert not (tmp_path / "c.db").exists()  # opening writes nothing; the first write creates
    catalog.prepare()
    catalog.close()
    assert (tmp_path / "c.db").stat().st_mode & 0o777 == 0o600
    db = sqlite3.connect(tmp_path / "c.db")
    assert db.execute("select version_num from alembic_version").fetchone()[0] == SCHEMA_HEAD
    assert db.execute("pragma journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute("select name from sqlite_master where type='table'")}
    assert {"files", "models", "vectors", "vector_log", "vector_indexes"} <= tables


def test_catalog_from_previous_revision_is_upgraded_and_backed_up(tmp_path):
    path = tmp_path / "old.db"
    engine = make_engine(url(path))
    migrate(engine, "0001")
    with engine.begin() as conn:
        conn.execute(
            text(
                "insert into files (id, path, size, mtime_ns, state, indexed_at) "
                "values (1, '/p/a.jpg', 10, 5, 'ok', '2024-01-01 00:00:00')"
            )
        )
        conn.execute(
            text(
                "insert into models (id, name, architecture, digest, dim, created_at) "
                "values (1, 'm', 'vit', 'abc', 2, '2024-01-01 00:00:00')"
            )
        )
        conn.execute(
            text("insert into vectors (file_id, model_id, vector) values (1, 1, :v)"),
            {"v": np.array([0.6, 0.8], np.float32).tobytes()},
        )
    engine.dispose()

    catalog = Catalog(url(path))
    with pytest.raises(CatalogError, match="older clipsearch"):
        catalog.models()  # reading never migrates
    assert not (tmp_path / "old.db.before-0001.bak").exists()
    catalog.prepare()
    assert (tmp_path / "old.db.before-0001.bak").exists()
    assert catalog.log_since(1, 0) == [(1, 1, "+")]  # old vectors enter the index log
    ids, vecs = catalog.vectors(1)
    assert ids.tolist() == [1] and np.allclose(vecs, [[0.6, 0.8]])
    backup = sqlite3.connect(tmp_path / "old.db.before-0001.bak")
    assert backup.execute("select version_num from alembic_version").fetchone()[0] == "0001"


def test_catalog_from_newer_version_is_refused_untouched(tmp_path):
    path = tmp_path / "new.db"
    catalog = Catalog(url(path))
    catalog.prepare()
    catalog.close()
    db = sqlite3.connect(path)
    db.execute("update alembic_version set version_num = '9999'")
    db.commit()
    db.execute("pragma wal_checkpoint(truncate)")
    db.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(CatalogError, match="newer clipsearch"):
        Catalog(url(path))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.db"]  # no backup, no WAL


def test_undecodable_path_round_trips(tmp_path):
    catalog = Catalog(url(tmp_path / "c.db"))
    odd = os.fsdecode(b"/photos/caf\xe9.jpg")
    with catalog.write() as s:
        s.add(File(path=odd, size=1, mtime_ns=1, state="ok"))
        s.add(File(path="/photos/ok.jpg", size=1, mtime_ns=1, state="ok"))
    assert set(catalog.files_under(["/photos"])) == {odd, "/photos/ok.jpg"}
    assert catalog.files_under(["/phot"]) == {}


def test_log_positions_are_never_reused_after_trimming(tmp_path):
    catalog = Catalog(url(tmp_path / "c.db"))
    model = catalog.register_model("m", "vit", "d1", 2)
    with catalog.write() as s:
        Catalog.log(s, model.id, [1, 2], "+")
    catalog.record_index(
        model.id,
        preset="exact",
        factory="Flat",
        params="{}",
        filename="x",
        log_seq=2,
        count=2,
        tombstones=0,
    )
    with catalog.write() as s:
        Catalog.log(s, model.id, [3], "+")
    assert catalog.log_since(model.id, 2) == [(3, 3, "+")]
    assert catalog.log_position(model.id) == 3


def test_postgresql_catalog_end_to_end(postgres_server, tmp_path):
    """`--db URL` with PostgreSQL: schema by Alembic, odd and undecodable names, folder
    filters (bytewise path ranges), incremental re-index, forget, and the same answers
    as a SQLite catalog of the same photos."""
    import json

    from conftest import make_image
    from typer.testing import CliRunner

    from clipsearch.cli import app

    photos = tmp_path / "photos"
    for i in range(6):
        make_image(photos / ("a" if i % 2 else "a b") / f"{i}.png", seed=i)
    make_image(photos / "a" / "ünïcødé 🐶.png", seed=7)
    make_image(photos / "a" / os.fsdecode(b"caf\xe9 \xff.png"), seed=8)
    make_image(photos / "a0" / "sibling.png", seed=9)  # sorts between "a" and "a/"
    db = postgres_server()
    runner = CliRunner()

    def run(*args, store="pg", url=db):
        extra = ["--db", url] if url else []
        result = runner.invoke(app, [*map(str, args), "--store", str(tmp_path / store), *extra])
        assert result.exit_code == 0, result.output
        return result.stdout

    index = ["index", photos, "--model", "random:tiny", "--workers", "1", "--json"]
    assert json.loads(run(*index))["added"] == 9
    assert json.loads(run(*index))["unchanged"] == 9
    run(*index, store="sqlite", url=None)
    query = ["query", photos / "a" / "1.png", "-k", "20", "--in", photos / "a", "-f", "json"]
    on_pg, on_sqlite = (
        json.loads(run(*query, **kw))["results"] for kw in ({}, {"store": "sqlite", "url": None})
    )
    assert [r["path"] for r in on_pg] == [r["path"] for r in on_sqlite]
    assert len(on_pg) == 5 and on_pg[0]["path"] == str(photos / "a" / "1.png")
    assert str(photos / "a" / os.fsdecode(b"caf\xe9 \xff.png")) in {r["path"] for r in on_pg}
    run("forget", photos / "a")
    assert json.loads(run("status", "--json"))["files"]["ok"] == 4
