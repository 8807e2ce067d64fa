"""What `pip install clipsearch` gets: a wheel with every module of every sub-package and
the data they read, which runs from where it is installed, the source tree out of reach."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import make_image

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built here from its own files (no download: the build tools
    of this environment)."""
    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    proc = subprocess.run(
        [*build, "--quiet", "--wheel-dir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        cwd=out,
    )
    if proc.returncode != 0 and "No module named" in proc.stderr and "setuptools" in proc.stderr:
        pytest.skip("setuptools is not installed here (pip install -e '.[dev]' brings it)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (found,) = out.glob("clipsearch-*.whl")
    return found


def shipped() -> set[str]:
    """What the wheel must hold: the package's modules and data, the migrations and the
    index presets (installed inside the package), as paths in the wheel."""
    package = ROOT / "clipsearch"
    want = {
        f"clipsearch/{p.relative_to(package)}"
        for p in package.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    for folder, suffixes in (("migrations", (".py", ".mako")), ("indexes", (".py", ".toml"))):
        for p in (ROOT / folder).rglob("*"):
            if p.suffix in suffixes and "__pycache__" not in p.parts:
                want.add(f"clipsearch/{folder}/{p.relative_to(ROOT / folder)}")
    return want


def test_the_wheel_ships_every_module_and_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert sorted(shipped() - names) == []


def test_the_installed_wheel_indexes_and_queries_from_elsewhere(wheel, tmp_path):
    """Installed into a folder of its own (its dependencies are this environment's), and
    run from a folder where the source tree cannot be imported."""
    target = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    subprocess.run([*install, "--target", str(target), str(wheel)], check=True)
    for i in range(3):
        make_image(tmp_path / "photos" / f"{i}.png", seed=i)
    env = {**os.environ, "PYTHONPATH": str(target), "CLIPSEARCH_HOME": str(tmp_path / "store")}
    where = "import clipsearch, sys; print(clipsearch.__file__)"
    found = subprocess.run(
        [sys.executable, "-c", where], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert found.stdout.startswith(str(target)), found.stdout + found.stderr
    cli = [sys.executable, "-m", "clipsearch"]
    for args in (
        ["--help"],
        ["index", "photos", "--model", "random:tiny"],
        ["query", "a photo", "-k", "2", "--format", "paths"],
    ):
        proc = subprocess.run([*cli, *args], env=env, cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 0, (args, proc.stderr[-2000:])
    assert len(proc.stdout.split()) == 2 and all("photos" in line for line in proc.stdout.split())
