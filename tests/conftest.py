"""Shared fixtures: tiny random models, generated images, the shared emoji data."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from helpers import EMOJI, train_emoji_models

PROCESS_ENV = {
    n: os.environ.get(n) for n in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
}
PROCESS_NICE = os.getpriority(os.PRIO_PROCESS, 0)


@pytest.fixture(autouse=True)
def own_process_settings():
    """`clipsearch index` run in this process (CliRunner, in tests or their fixtures)
    lowers its priority and sets OpenMP's variables, as it should for its own process:
    after each test the process is as the session started it."""
    yield
    for name, value in PROCESS_ENV.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, 0, PROCESS_NICE)


@pytest.fixture(params=["avx2", "bf16"])
def cpu_kind(request, monkeypatch):
    """Both kinds of CPU these machines come in, whichever this one is: without native bf16
    (AVX2) and with it (AVX512-BF16 or AMX), as `native_bf16()` answers."""
    monkeypatch.setenv("CLIPSEARCH_NATIVE_BF16", "1" if request.param == "bf16" else "0")
    return request.param


@pytest.fixture(scope="session")
def tiny():
    from clipsearch import load_model

    return load_model("random:tiny")


@pytest.fixture
def emoji_dir() -> Path:
    if not (EMOJI / "captions.jsonl").exists():
        pytest.skip(f"shared emoji data not found at {EMOJI}")
    return EMOJI


@pytest.fixture(scope="session")
def emoji_models(tmp_path_factory):
    """A tiny CLIP trained from scratch by clipsearch on two emoji styles (train split), then
    fine-tuned on the third style's train split. Evaluated on the third style's `val`
    concepts, which neither run ever saw. About three minutes on two CPU cores."""
    if not (EMOJI / "captions.jsonl").exists():
        pytest.skip(f"shared emoji data not found at {EMOJI}")
    folder = tmp_path_factory.mktemp("emoji")
    return train_emoji_models(folder)


def _pg_binaries() -> tuple[str, str] | None:
    """initdb and pg_ctl from PATH or Debian's versioned folders."""
    for folder in [None, *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]:
        initdb = shutil.which("initdb", path=str(folder) if folder else None)
        pg_ctl = shutil.which("pg_ctl", path=str(folder) if folder else None)
        if initdb and pg_ctl:
            return initdb, pg_ctl
    return None


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server on a Unix socket (run as `postgres` when we are root:
    the server refuses root). Yields a function that makes a fresh database's URL."""
    pytest.importorskip("psycopg", reason="the PostgreSQL driver psycopg is not installed")
    binaries = _pg_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    initdb, pg_ctl = binaries
    base = Path(tempfile.mkdtemp(prefix="clipsearch-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    data, log = base / "data", base / "server.log"
    subprocess.run(
        [*as_owner, initdb, "-D", str(data), "-A", "trust", "-U", "clipsearch", "--no-sync"],
        check=True,
        capture_output=True,
    )
    options = f"-k {base} -c listen_addresses='' -c fsync=off"
    started = subprocess.run(
        [*as_owner, pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "start"],
        capture_output=True,
        text=True,
    )
    if started.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start: {started.stderr.strip()}")
    import psycopg

    made = iter(range(10**6))

    def fresh_database() -> str:
        name = f"catalog{next(made)}"
        with psycopg.connect(f"host={base} user=clipsearch dbname=postgres", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://clipsearch@/{name}?host={base}"

    yield fresh_database
    subprocess.run([*as_owner, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], check=False)
    shutil.rmtree(base, ignore_errors=True)
