"""The command line: embed and models, through the real typer app and the installed script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import make_image
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
    assert run("embed", "--model", "random:tiny").exit_code == 2


def test_models_json_lists_named_models():
    result = run("models", "--json")
    names = {m["name"] for m in json.loads(result.stdout)}
    assert {"ViT-B-32/openai", "ViT-L-14-336/openai", "ViT-B-32/laion2b"} <= names


def test_installed_script_reports_offline_model_clearly(tmp_path):
    exe = Path(sys.executable).parent / "clipsearch"
    assert exe.exists(), "the clipsearch console script is not installed"
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([exe, "embed", "-t", "cat"], capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    assert "ViT-B-32/openai" in proc.stderr and "Traceback" not in proc.stderr


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
