"""The command line: embed and models, through the real typer app and the installed script."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import make_image
from typer.testing import CliRunner

from clipsearch.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_embed_text_and_image_json(tmp_path, tiny):
    img = make_image(tmp_path / "a.png")
    result = run("embed", "--model", "random:tiny", "-t", "a cat", "-i", str(img), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dim"] == 64 and data["digest"] == tiny.digest
    text, image = (np.array(v["vector"]) for v in data["vectors"])
    np.testing.assert_allclose(text, tiny.encode_text(["a cat"])[0], atol=1e-6)
    np.testing.assert_allclose(image, tiny.encode_images([img])[0], atol=1e-6)


def test_embed_plain_output_one_line_per_input():
    result = run("embed", "--model", "random:tiny", "-t", "one", "-t", "two")
    lines = result.stdout.strip().splitlines()
    assert result.exit_code == 0 and len(lines) == 2
    assert lines[0].startswith("text\tone\t") and len(lines[0].split("\t")[2].split()) == 64


def test_embed_bad_image_is_one_clear_line(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"")
    result = run("embed", "--model", "random:tiny", "-i", str(tmp_path / "x.jpg"))
    assert result.exit_code == 1
    assert "x.jpg" in result.stderr and "empty" in result.stderr
    assert "Traceback" not in result.output


def test_embed_long_text_warns():
    result = run("embed", "--model", "random:tiny", "-t", "word " * 100)
    assert result.exit_code == 0 and "truncated" in result.stderr


def test_embed_needs_input():
    result = run("embed", "--model", "random:tiny")
    assert result.exit_code == 2 and "give at least one --text or --image" in result.stderr


def test_models_json_lists_named_models():
    result = run("models", "--json")
    models = {m["name"]: m for m in json.loads(result.stdout)}
    assert {"ViT-B-32/openai", "ViT-L-14-336/openai", "ViT-B-32/laion2b"} <= set(models)
    siglip2 = models["ViT-B-16-SigLIP2/webli"]
    assert siglip2["needs_open_clip"] and siglip2["dim"] == 768 and siglip2["family"] == "SigLIP 2"
    assert not models["ViT-B-16/dfn2b"]["needs_open_clip"]
    assert (
        "open_clip extra" in run("models").stdout
        and "clipsearch[open_clip]" in run("models").stdout
    )


def test_installed_script_reports_offline_model_clearly(tmp_path):
    exe = Path(sys.executable).parent / "clipsearch"
    assert exe.exists(), "the clipsearch console script is not installed"
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([exe, "embed", "-t", "cat"], capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    assert "ViT-B-32/openai" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["query", "--bogus"], "No such option: --bogus (see `clipsearch query --help`)"),
        (["index"], "Missing argument 'paths' (see `clipsearch index --help`)"),
        (["nosuch"], "No such command 'nosuch' (see `clipsearch --help`)"),
        (["query", "--\x1b[31mred"], "No such option: --"),
    ],
)
def test_a_mistyped_command_line_is_one_line_that_says_where_help_is(args, says):
    """The installed script's usage errors, as every other failure: one line, exit 2,
    no control character of the command line printed."""
    exe = Path(sys.executable).parent / "clipsearch"
    proc = subprocess.run([exe, *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and says in proc.stderr, proc.stderr
    assert "\x1b" not in proc.stderr and "Usage" not in proc.stderr and not proc.stdout


def test_the_script_without_a_command_shows_its_help():
    exe = Path(sys.executable).parent / "clipsearch"
    proc = subprocess.run([exe], capture_output=True, text=True)
    assert proc.returncode == 2 and "Commands" in proc.stdout + proc.stderr


def test_index_summary_and_status_failed(tmp_path):
    for i in range(3):
        make_image(tmp_path / "p" / f"{i}.png", seed=i)
    (tmp_path / "p" / "bad.jpg").write_text("nope")
    store = str(tmp_path / "store")
    result = run(
        "index", str(tmp_path / "p"), "--model", "random:tiny", "--store", store, "--workers", "1"
    )
    assert result.exit_code == 0, result.output
    assert "3 added" in result.stdout and "1 failed" in result.stdout
    assert "bad.jpg" in result.stderr  # each failure named as it happens
    status = run("status", "--store", store, "--failed")
    assert "3 indexed, 1 failed" in status.stdout and "bad.jpg: not an image" in status.stdout
    dry = run("index", str(tmp_path / "p"), "--store", store, "--dry-run")
    assert "would embed 0" in dry.stdout


def test_index_rejects_unknown_preset(tmp_path):
    result = run(
        "index",
        str(tmp_path),
        "--model",
        "random:tiny",
        "--store",
        str(tmp_path / "s"),
        "--preset",
        "magic",
    )
    assert result.exit_code == 1 and "unknown preset" in result.stderr


def test_status_and_forget_do_not_import_torch(tmp_path):
    """Commands that need no model answer without torch's seconds of import."""
    make_image(tmp_path / "p" / "a.png")
    store = str(tmp_path / "s")
    indexed = run("index", str(tmp_path / "p"), "--model", "random:tiny", "--store", store)
    assert indexed.exit_code == 0, indexed.output
    code = (
        "import sys; from clipsearch.cli import app; "
        "app(sys.argv[1:], standalone_mode=False); "
        "print('torch' in sys.modules, file=sys.stderr)"
    )
    for args in (["status", "--store", store], ["forget", str(tmp_path / "p"), "--store", store]):
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == "False"


def test_a_query_that_skips_the_interpreter_s_shutdown_says_everything(tmp_path):
    """Reading commands leave with os._exit once torch is loaded: what they print, in a
    pipe or a file, and their exit status must arrive whole all the same."""
    for i in range(30):
        make_image(tmp_path / "p" / f"img{i:02d}.png", seed=i)
    store = str(tmp_path / "s")
    assert run("index", str(tmp_path / "p"), "-m", "random:tiny", "--store", store).exit_code == 0
    query = [sys.executable, "-m", "clipsearch", "query", "a photo", "--store", store, "-k", "30"]
    piped = subprocess.run([*query, "--format", "json"], capture_output=True, text=True)
    assert piped.returncode == 0, piped.stderr
    assert len(json.loads(piped.stdout)["results"]) == 30
    to_file = [*query, "--format", "jsonl", "-o", str(tmp_path / "r.jsonl")]
    assert subprocess.run(to_file, capture_output=True).returncode == 0
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 30
    other_model = [*query, "-m", "random:mini"]  # loaded (torch too), then: no vectors of it
    failing = subprocess.run(other_model, capture_output=True, text=True)
    assert failing.returncode == 1 and "no vectors from model" in failing.stderr


def test_a_writing_command_leaves_through_the_shutdown_with_its_objects_frozen(tmp_path):
    """`index` runs the exit handlers (multiprocessing's, concurrent.futures'), but its
    objects are out of the cycle collector's last passes, most of the shutdown's time."""
    for i in range(3):
        make_image(tmp_path / "p" / f"img{i}.png", seed=i)
    code = (
        "import atexit, gc, sys; from clipsearch.cli import run; "
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0, file=sys.stderr)); "
        "run(sys.argv[1:])"
    )
    args = ["index", str(tmp_path / "p"), "-m", "random:tiny", "--store", str(tmp_path / "s")]
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "frozen True"
    from clipsearch.library import Library

    with Library(tmp_path / "s") as lib:
        assert lib.status().files_ok == 3


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Everything the bad inputs below point at: a store of three photos, and files that
    are wrong in every way the audit found."""
    import sqlite3

    import torch

    from clipsearch.models.encoder import load_model

    w = tmp_path_factory.mktemp("world")
    for i in range(3):
        make_image(w / "photos" / f"{i}.png", seed=i)
    make_image(w / "photos" / "[x].png", seed=5)
    indexed = run("index", str(w / "photos"), "--model", "random:tiny", "--store", str(w / "s"))
    assert indexed.exit_code == 0, indexed.output
    (w / "garbage").mkdir()
    (w / "garbage" / "catalog.db").write_bytes(b"not a database " * 400)
    (w / "folder" / "catalog.db").mkdir(parents=True)
    foreign = sqlite3.connect(w / "foreign.db")
    foreign.execute("create table notes (body text)")
    foreign.commit()
    foreign.close()
    (w / "latin.csv").write_bytes("image,caption\nphotos/0.png,caf\xe9\n".encode("latin-1"))
    (w / "lists.jsonl").write_text("[1, 2]\n")
    (w / "templates.txt").write_text("a photo of {} in {x}\n")
    state = load_model("random:tiny").model.state_dict()
    state["visual.proj"] = torch.zeros(5, 7)
    torch.save(state, w / "wrong-shapes.pt")
    (w / "garbage.pt").write_bytes(b"\x00garbage" * 100)
    (w / "link.png").symlink_to(w / "photos" / "0.png")
    (w / "results.txt").write_text("the old results")
    (w / "deep").mkdir()
    (w / "deep" / "clipsearch.json").write_text("[" * 100_000 + "]" * 100_000)
    (w / f"results.txt.{os.getpid()}.tmp").symlink_to("/dev/full")  # disk full mid-write
    return w


# (what is wrong, arguments with {w} for the folder above, exit status, what the line says)
BAD_INPUTS = [
    ("catalog that is garbage", "status --store {w}/garbage", 1, "not a clipsearch catalog"),
    ("catalog that is a folder", "status --store {w}/folder", 1, "is not a file"),
    ("another program's SQLite", "status --db sqlite:///{w}/foreign.db", 1, "not a clipsearch"),
    ("--db that is no URL", "status --db foo", 1, "not a database URL"),
    ("--db of a web address", "status --db http://example.com/x", 1, "knows no database"),
    ("--db without its driver", "status --db mysql://u@localhost/db", 1, "not installed"),
    ("unreachable PostgreSQL", "status --db postgresql+psycopg://u@127.0.0.1:1/d", 1, "refused"),
    ("--db in a missing folder", "index {w}/photos --db sqlite:///{w}/no/x.db", 1, "not exist"),
    ("in-memory --db", "index {w}/photos --db sqlite://", 1, "in-memory"),
    ("a file as --store", "status --store {w}/latin.csv", 1, "is a file"),
    ("store never indexed", "query dog --store {w}/empty", 1, "clipsearch index PATH"),
    ("unknown preset", "rebuild --store {w}/s --preset magic", 1, "unknown preset"),
    ("preset too big for the store", "rebuild --store {w}/s --preset ivf-pq", 0, "stands in"),
    ("a budget that is no size", "rebuild --store {w}/s --memory-budget lots", 1, "800M, 4G"),
    ("a budget that is no size", "index {w}/photos --store {w}/s --memory-budget 4X", 1, "4G"),
    ("huge -k", "query dog --store {w}/s -k 3000000000 -f paths", 0, ""),
    ("-k 0", "query dog --store {w}/s -k 0", 2, "'-k'"),
    ("markup as a model name", "query dog --store {w}/s --model [/bold]", 1, "'[/bold]'"),
    ("colour markup as a model", "query dog --store {w}/s -m [red]x[/red]", 1, "[red]x[/red]"),
    ("markup in an image name", "query --store {w}/s --image {w}/[/x].png", 1, "[/x].png"),
    ("--ext %", "query dog --store {w}/s --ext % -f paths", 0, ""),
    ("a date that is none", "query dog --store {w}/s --after yesterday", 1, "not a date"),
    ("empty query", "query --store {w}/s", 1, "empty query"),
    ("--device of no kind", "embed -t hi -m random:tiny --device foo", 1, "unknown device"),
    ("weights of wrong shapes", "embed -t hi -m {w}/wrong-shapes.pt", 1, "size mismatch"),
    ("weights that are garbage", "embed -t hi -m {w}/garbage.pt", 1, "not a weights file"),
    ("a model name offline", "embed -t hi -m ViT-B-16/laion2b", 1, "hf download laion/"),
    ("captions not in UTF-8", "train --data {w}/latin.csv --arch tiny", 1, "UTF-8"),
    ("JSONL rows that are lists", "train --data {w}/lists.jsonl --arch tiny --run-dir {w}/r", 1,
     "JSON object"),
    ("--accum 0", "train --data {w}/lists.jsonl --arch tiny --accum 0", 2, "--accum"),
    ("--accum -1", "train --data {w}/lists.jsonl --arch tiny --accum -1", 2, "--accum"),
    ("{x} in a template", "classify {w}/photos/0.png --labels a,b --templates {w}/templates.txt "
     "-m random:tiny", 1, "no other braces"),
    ("a linked root file", "index {w}/link.png --store {w}/s2 -m random:tiny", 0, "symbolic link"),
    ("output to a full disk", "query dog --store {w}/s -f paths -o {w}/results.txt", 1,
     "disk is full"),
    ("an empty date range of year 1", "query dog --store {w}/s --after 0001 --before 0001 "
     "-f paths", 0, ""),
    ("a date past year 9999 in UTC", "query dog --store {w}/s --after "
     "9999-12-31T23:59:59-14:00", 1, "date out of range"),
    ("a random model's seed that is no number", "embed -t hi -m random:tiny:x", 1,
     "whole number"),
    ("a random model's seed too large", "embed -t hi -m random:tiny:99999999999999999999999",
     1, "below 2**63"),
    ("an image as weights", "embed -t hi -m {w}/photos/0.png", 1, "not a weights file"),
    ("a config nested too deep", "embed -t hi -m {w}/deep", 1, "not a config"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "status", "says"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_is_one_clear_line(world, args, status, says):
    result = runner.invoke(app, args.format(w=world).split())
    assert result.exit_code == status, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    if status == 1:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert says in result.stderr


def test_cuda_without_cuda_says_what_to_do():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run("embed", "-t", "hi", "-m", "random:tiny", "--device", "cuda")
    assert result.exit_code == 1 and "--device cpu" in result.stderr


def test_a_clipsearch_home_of_no_such_user_is_one_line(monkeypatch):
    monkeypatch.setenv("CLIPSEARCH_HOME", "~nosuchuser/x")
    result = run("status")
    assert result.exit_code == 1 and "no such user" in result.stderr
    assert "unexpected" not in result.stderr


def test_a_failed_write_leaves_the_old_output_whole(world):
    assert (world / "results.txt").read_text() == "the old results"


def test_a_broken_preset_file_is_named_and_status_still_works(world, monkeypatch):
    from clipsearch.storage import presets

    def broken():
        return presets.read_preset("fast.toml", 'name = "fast"\nfactory = "Flat"\n')

    monkeypatch.setattr(presets, "presets", broken)
    assert run("status", "--store", str(world / "s")).exit_code == 0
    result = run("rebuild", "--store", str(world / "s"), "--preset", "fast")
    assert result.exit_code == 1
    assert "indexes/fast.toml: missing keys" in result.stderr


def test_names_that_would_drive_the_terminal_are_shown_escaped(tmp_path):
    """A file named with escape sequences (clear screen, retitle, OSC 8 links) reaches the
    terminal as visible text; machine formats keep it exact."""
    evil = "\x1b[2J\x1b]0;pwned\x07\x1b]8;;https:example.com\x1b\\"
    make_image(tmp_path / "p" / f"{evil}.png")
    (tmp_path / "p" / f"{evil}.jpg").write_text("not an image")
    store = ["--store", str(tmp_path / "s")]
    wide = {"COLUMNS": "300"}  # the whole name in the table's path column
    shown = [
        runner.invoke(app, ["index", str(tmp_path / "p"), "-m", "random:tiny", *store]),
        runner.invoke(app, ["query", "a dog", *store], env=wide),
        runner.invoke(app, ["status", "--failed", *store]),
    ]
    for result in shown:
        assert result.exit_code == 0 and "\x1b" not in result.output and "\x07" not in result.output
        assert "\\x1b[2J" in result.output
    paths = run("query", "a dog", *store, "-f", "paths")
    assert f"{evil}.png" in paths.stdout  # exact, for pipes


def test_non_utf8_names_make_a_valid_utf8_gallery(tmp_path):
    make_image(tmp_path / "p" / os.fsdecode(b"caf\xe9.png"))
    store = ["--store", str(tmp_path / "s")]
    assert run("index", str(tmp_path / "p"), "-m", "random:tiny", *store).exit_code == 0
    result = run("query", "a dog", *store, "-f", "html", "-o", str(tmp_path / "g.html"))
    assert result.exit_code == 0
    (tmp_path / "g.html").read_bytes().decode("utf-8")  # strict: raises if invalid


def test_two_models_and_no_model_named_ask_which_without_the_network(tmp_path):
    make_image(tmp_path / "p" / "a.png")
    store = ["--store", str(tmp_path / "s")]
    for model in ("random:tiny", "random:tiny:1"):
        assert run("index", str(tmp_path / "p"), "-m", model, *store).exit_code == 0
    result = run("query", "a dog", *store)
    assert result.exit_code == 1 and "several models" in result.stderr
    assert "random:tiny:1 (1 vectors)" in result.stderr


def test_debug_shows_the_traceback(world):
    result = run("--debug", "status", "--store", str(world / "garbage"))
    assert result.exit_code == 1 and "Traceback" in result.stderr


def test_a_value_error_from_a_bug_is_called_a_bug(tmp_path, monkeypatch):
    """User errors are ClipsearchErrors and read as one line of what to do; a ValueError
    from inside (numpy, torch, clipsearch itself) is not mistaken for one."""
    from clipsearch.core.errors import ClipsearchError, explain
    from clipsearch.library import Library

    assert explain(ClipsearchError("give a folder")) == "give a folder"
    assert explain(ValueError("operands could not be broadcast")) is None

    def broken(self, *args, **kwargs):
        raise ValueError("operands could not be broadcast together with shapes (3,) (4,)")

    make_image(tmp_path / "p" / "a.png")
    assert (
        run(
            "index", str(tmp_path / "p"), "--model", "random:tiny", "--store", str(tmp_path / "s")
        ).exit_code
        == 0
    )
    monkeypatch.setattr(Library, "search", broken)
    result = run("query", "a", "--store", str(tmp_path / "s"))
    assert result.exit_code == 1 and "This is a bug in clipsearch" in result.stderr


def test_a_bad_format_and_a_run_without_a_model_are_user_errors(tmp_path):
    make_image(tmp_path / "p" / "a.png")
    store = str(tmp_path / "s")
    assert (
        run("index", str(tmp_path / "p"), "--model", "random:tiny", "--store", store).exit_code == 0
    )
    result = run("query", "a", "--store", store, "--format", "pdf")
    assert result.exit_code == 1 and "--format must be auto or one of" in result.stderr
    (tmp_path / "d.csv").write_text("image,caption\np/a.png,a\n")
    result = run("train", "--data", str(tmp_path / "d.csv"), "--run-dir", str(tmp_path / "r"))
    assert result.exit_code == 1 and "give --arch CONFIG" in result.stderr
    assert "bug" not in result.stderr


def test_output_to_a_device_or_a_link_writes_through_it(world, tmp_path):
    store = ["--store", str(world / "s"), "-f", "paths"]
    assert run("query", "a photo", *store, "-o", "/dev/null").exit_code == 0
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)  # still the device, not a file
    target = tmp_path / "target.txt"
    target.write_text("old")
    (tmp_path / "link.txt").symlink_to(target)
    assert run("query", "a photo", *store, "-o", str(tmp_path / "link.txt")).exit_code == 0
    assert (tmp_path / "link.txt").is_symlink() and "0.png" in target.read_text()


def test_a_fifo_as_a_query_image_is_refused_at_once(world, tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    result = run("query", "--image", str(tmp_path / "pipe.png"), "--store", str(world / "s"))
    assert result.exit_code == 1 and "not a regular file" in result.stderr


def imported_torch(stderr: str) -> bool:
    """Whether `python -X importtime` says torch was imported."""
    modules = [line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines()]
    return any(m == "torch" or m.startswith("torch.") for m in modules)


def test_index_exports_the_text_tower_and_queries_start_without_torch(tmp_path):
    """An index run that embedded exports the model's text tower; a query that finds none
    (a store indexed before, an export deleted) makes it after its answer."""
    pytest.importorskip("onnxruntime", reason="the fast extra is not installed")
    from clipsearch.core.memo import user_cache
    from clipsearch.models.encoder import load_model
    from clipsearch.models.onnx_text import FOLDER

    load_model("random:tiny:7").save(str(tmp_path / "model"))
    for i in range(4):
        make_image(tmp_path / "photos" / f"{i}.png", seed=i)
    store = str(tmp_path / "store")
    cli = [sys.executable, "-X", "importtime", "-m", "clipsearch"]
    index = [*cli, "index", str(tmp_path / "photos"), "-m", str(tmp_path / "model"),
             "--store", store]  # fmt: skip
    indexed = subprocess.run(index, capture_output=True, text=True, timeout=300)
    assert indexed.returncode == 0, indexed.stderr[-2000:]
    assert "Exporting the model's text tower, once" in indexed.stderr
    query = [*cli, "query", "a photo", "--store", store, "-f", "paths"]
    fast = subprocess.run(query, capture_output=True, text=True, timeout=300)
    assert fast.returncode == 0 and not imported_torch(fast.stderr), fast.stderr[-2000:]
    assert "Exporting" not in fast.stderr and len(fast.stdout.split()) == 4
    shutil.rmtree(user_cache() / FOLDER)  # kept for the user, not in the store
    first = subprocess.run(query, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0 and imported_torch(first.stderr), first.stderr[-2000:]
    assert "Exporting the model's text tower, once" in first.stderr
    again = subprocess.run(query, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and not imported_torch(again.stderr), again.stderr[-2000:]
    assert again.stdout == first.stdout == fast.stdout


def read_only(store: Path, *argv: str) -> subprocess.CompletedProcess:
    """`clipsearch ARGV` with the store on a read-only mount (root: a bind mount in a mount
    namespace of its own), or read-only by its modes (anyone else)."""
    command = [sys.executable, "-m", "clipsearch", *argv]
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(store)], check=True)
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=120)
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(store)], check=True)
    mount = f'mount --bind {store} {store} && mount -o remount,ro,bind {store} && exec "$@"'
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", mount, "sh", *command],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_store_on_a_read_only_volume_is_searched_not_changed(tmp_path):
    if os.geteuid() == 0 and not shutil.which("unshare"):
        pytest.skip("no unshare(1) to make a read-only mount")
    for i in range(3):
        make_image(tmp_path / "photos" / f"{i}.png", seed=i)
    store = tmp_path / "store"
    assert run("index", str(tmp_path / "photos"), "-m", "random:tiny", "--store", str(store))
    assert not (store / "catalog.db-shm").exists()  # as after any clean exit
    probe = read_only(store, "status", "--store", str(store))
    if "Operation not permitted" in probe.stderr or "unshare" in probe.stderr:
        pytest.skip(f"this machine cannot make a read-only mount: {probe.stderr.strip()}")
    assert probe.returncode == 0, probe.stderr
    found = read_only(store, "query", "a photo", "--store", str(store), "-f", "paths")
    assert found.returncode == 0 and len(found.stdout.split()) == 3, found.stderr
    refused = read_only(store, "index", str(tmp_path / "photos"), "--store", str(store))
    assert refused.returncode == 1 and "cannot be written" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_another_program_s_database_with_an_unmerged_wal_is_left_as_it_was(tmp_path):
    import shutil
    import sqlite3

    live = tmp_path / "live.db"
    conn = sqlite3.connect(live)
    conn.execute("pragma journal_mode=wal")
    conn.execute("pragma wal_autocheckpoint=0")
    conn.execute("create table notes (body text)")
    conn.execute("insert into notes values ('unmerged')")
    conn.commit()
    db = tmp_path / "notes.db"  # as that program left it when it crashed: the WAL unmerged
    shutil.copy(live, db)
    shutil.copy(tmp_path / "live.db-wal", tmp_path / "notes.db-wal")
    conn.close()
    main, wal = db.read_bytes(), (tmp_path / "notes.db-wal").read_bytes()
    result = run("status", "--db", f"sqlite:///{db}")
    assert result.exit_code == 1 and "nothing was changed" in result.stderr
    assert db.read_bytes() == main and (tmp_path / "notes.db-wal").read_bytes() == wal


INTERRUPTED_IN_A_CALLBACK = """
import importlib, signal, sys, time, weakref
app = importlib.import_module("clipsearch.cli.app")  # the module (clipsearch.cli.app is the app)
signal.signal(signal.SIGTERM, app._terminate)
sys.unraisablehook = app._interrupted_again

class Thing:
    pass

def callback(ref):
    raise {exception}

thing = Thing()
ref = weakref.ref(thing, callback)
try:
    del thing  # the callback runs here, as the cycle collector would run it anywhere
    time.sleep(5)
    print("carried on")
except KeyboardInterrupt as e:
    print("stopped:", type(e).__name__)
"""


@pytest.mark.parametrize(
    "exception, stopped",
    [("KeyboardInterrupt", "KeyboardInterrupt"), ("app.Terminated", "Terminated")],
)
def test_ctrl_c_or_sigterm_landing_in_a_callback_still_stops(exception, stopped):
    """A Ctrl-C that lands in a weak reference's callback cannot propagate from there:
    Python printed "Exception ignored" and the command carried on. The CLI sends it again."""
    code = INTERRUPTED_IN_A_CALLBACK.format(exception=exception)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == f"stopped: {stopped}"
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr
