"""The catalog schema: migrations forward, refusal of newer schemas, odd paths, WAL."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from clipsearch.cli import app
from clipsearch.core.versions import SCHEMA_HEAD
from clipsearch.storage.catalog import Catalog
from clipsearch.storage.catalog_vectors import log_changes
from clipsearch.storage.database import CatalogError, State, make_engine, migrate
from clipsearch.storage.schema import File


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
        catalog.models.counted()  # reading never migrates
    assert not (tmp_path / "old.db.before-0001.bak").exists()
    catalog.prepare()
    assert (tmp_path / "old.db.before-0001.bak").exists()
    assert catalog.vectors.log_since(1, 0) == [(1, 1, "+")]  # old vectors enter the index log
    ids, vecs = catalog.vectors.get(1)
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
    assert set(catalog.files.under(["/photos"])) == {odd, "/photos/ok.jpg"}
    assert catalog.files.under(["/phot"]) == {}


def test_log_positions_are_never_reused_after_trimming(tmp_path):
    catalog = Catalog(url(tmp_path / "c.db"))
    model = catalog.models.register("m", "vit", "d1", 2)
    with catalog.write() as s:
        log_changes(s, model.id, [1, 2], "+")
    catalog.indexes.record(
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
        log_changes(s, model.id, [3], "+")
    assert catalog.vectors.log_since(model.id, 2) == [(3, 3, "+")]
    assert catalog.vectors.log_position(model.id) == 3


def test_postgresql_catalog_end_to_end(postgres_server, tmp_path):
    """`--db URL` with PostgreSQL: schema by Alembic, odd and undecodable names, folder
    filters (bytewise path ranges), incremental re-index, forget, and the same answers
    as a SQLite catalog of the same photos."""
    from helpers import make_image

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


MIGRATE = """
import sys
from clipsearch.storage.catalog import Catalog
Catalog(sys.argv[1]).prepare()
"""


def migrate_in_a_process(db_url: str, fault: str = "") -> subprocess.Popen:
    env = {**os.environ, "CLIPSEARCH_FAULT": fault}
    return subprocess.Popen([sys.executable, "-c", MIGRATE, db_url], env=env)


def test_a_crash_inside_the_first_migration_leaves_nothing_half_made(tmp_path):
    """Python's sqlite3 used to commit each CREATE TABLE as it ran: killed mid-migration,
    the catalog had tables and no version, and every later command failed forever."""
    db = url(tmp_path / "c.db")
    assert migrate_in_a_process(db, "migration=kill").wait() == -9
    raw = sqlite3.connect(tmp_path / "c.db")
    assert raw.execute("select name from sqlite_master where type='table'").fetchall() == []
    raw.close()
    catalog = Catalog(db)
    catalog.prepare()
    assert catalog.models.counted() == []


def test_two_first_runs_racing_migrate_once(tmp_path):
    db = url(tmp_path / "c.db")
    runs = [migrate_in_a_process(db, "migration=sleep:1") for _ in range(3)]
    assert [run.wait(timeout=120) for run in runs] == [0, 0, 0]
    assert Catalog(db).state is State.CURRENT


def test_reading_commands_refuse_a_foreign_database_untouched(tmp_path):
    path = tmp_path / "other-program.db"
    raw = sqlite3.connect(path)
    raw.execute("create table notes (body text)")
    raw.execute("insert into notes values ('mine')")
    raw.commit()
    raw.close()
    before = path.read_bytes()
    for command in (["status"], ["query", "dog"], ["index", str(tmp_path), "--dry-run"]):
        result = CliRunner().invoke(app, [*command, "--db", url(path)])
        assert result.exit_code == 1 and "not a clipsearch catalog" in result.stderr
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other-program.db"]  # no WAL


def test_an_in_memory_catalog_is_refused():
    with pytest.raises(CatalogError, match="in-memory"):
        Catalog("sqlite://")


def test_every_write_transaction_raises_the_generation_and_an_undone_one_does_not(tmp_path):
    """What settled.py trusts: a write anyone made since shows in one number, read by
    Python's own sqlite3 as by SQLAlchemy."""
    from clipsearch.indexing.settled import generation

    catalog = Catalog(url(tmp_path / "c.db"))
    assert catalog.generation() is None and generation(tmp_path / "c.db") is None
    catalog.prepare()
    assert catalog.generation() == 0 == generation(tmp_path / "c.db")
    catalog.models.register("m", "vit", "d1", 2)
    with catalog.write() as s:
        s.add(File(path="/p/a.png", size=1, mtime_ns=1, state="ok"))
    assert catalog.generation() == 2 == generation(tmp_path / "c.db")
    with pytest.raises(RuntimeError), catalog.write() as s:
        s.add(File(path="/p/b.png", size=1, mtime_ns=1, state="ok"))
        s.flush()
        raise RuntimeError("undone")
    assert catalog.generation() == 2 == generation(tmp_path / "c.db")
    catalog.close()


def test_the_log_position_never_moves_back(tmp_path):
    """Two writers out of order: the one that read the log earlier must not point the
    catalog back at its older index and drop the changes logged since."""
    catalog = Catalog(url(tmp_path / "c.db"))
    model = catalog.models.register("m", "vit", "d1", 2)
    with catalog.write() as s:
        log_changes(s, model.id, [1, 2, 3, 4], "+")
    fields = dict(preset="exact", factory="Flat", params="{}", filename="x", count=4)
    assert catalog.indexes.record(model.id, log_seq=4, tombstones=0, **fields)
    with catalog.write() as s:
        log_changes(s, model.id, [5], "+")
    assert not catalog.indexes.record(model.id, log_seq=2, tombstones=0, **fields)
    assert catalog.indexes.row(model.id).log_seq == 4
    assert catalog.vectors.log_since(model.id, 4) == [(5, 5, "+")]


def test_an_index_file_name_in_the_catalog_is_never_used_as_a_path(tmp_path):
    """A catalog someone else can write (a copied store, a shared --db) names a file to
    delete; clipsearch derives index file names and touches only its own."""
    from helpers import make_image

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for i in range(3):
        make_image(tmp_path / "photos" / f"{i}.png", seed=i)
    store = tmp_path / "store"
    run = ["--store", str(store)]
    index = ["index", str(tmp_path / "photos"), "--model", "random:tiny", "--workers", "1"]
    assert CliRunner().invoke(app, index + run).exit_code == 0
    raw = sqlite3.connect(store / "catalog.db")
    raw.execute("update vector_indexes set filename = ?", (str(victim),))
    raw.commit()
    raw.close()
    for command in (index, ["rebuild"], ["forget", str(tmp_path / "photos" / "0.png")]):
        assert CliRunner().invoke(app, command + run).exit_code == 0
        assert victim.read_text() == "precious"
    status = CliRunner().invoke(app, ["status", "--json", *run])
    assert json.loads(status.stdout)["models"][0]["index"]["file"].startswith("model1-")


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("update vector_indexes set params = '[1]'", None),  # the index is made again
        ("update vector_indexes set params = 'not json'", None),
        ("update vector_indexes set recall = '{\"sets\": 3}'", None),
        ("update models set dim = 7", "recorded with 7 dimensions"),
        ("update vectors set vector = x'0000' where file_id = 1", "file #1 has 2 bytes"),
        ("update files set taken_at = 'garbage' where id = 1", None),  # read as unknown
    ],
)
def test_damaged_catalog_values_are_one_line_or_mended(tmp_path, damage, says):
    from helpers import make_image

    for i in range(3):
        make_image(tmp_path / "photos" / f"{i}.png", seed=i)
    store = tmp_path / "store"
    runner = CliRunner()
    assert runner.invoke(app, ["index", str(tmp_path / "photos"), "-m", "random:tiny",
                               "--store", str(store)]).exit_code == 0  # fmt: skip
    db = sqlite3.connect(store / "catalog.db")
    db.execute(damage)
    db.commit()
    db.close()
    if "vectors" in damage:  # read when the index is made again
        (store / "indexes").rename(tmp_path / "indexes-gone")
    found = runner.invoke(app, ["query", "a photo", "--store", str(store), "-f", "paths"])
    status = runner.invoke(app, ["status", "--store", str(store)])
    assert status.exit_code == 0, status.stderr
    if says is None:
        assert found.exit_code == 0 and len(found.stdout.split()) == 3, found.stderr
    else:
        assert found.exit_code == 1 and says in found.stderr and "damaged" in found.stderr
        assert "unexpected" not in found.stderr
