"""Shared fixtures: tiny random models, generated images, the shared emoji data."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from helpers import EMOJI, PostgresUnavailable, throwaway_postgres, train_emoji_models

PROCESS_ENV = {
    n: os.environ.get(n) for n in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
}
PROCESS_NICE = os.getpriority(os.PRIO_PROCESS, 0)


@pytest.fixture(autouse=True, scope="session")
def session_cache(tmp_path_factory):
    """The user's cache folder (weights digests, core/memo.py; exported text towers,
    models/onnx_text.py) is never the real one: the session's own for fixtures wider than
    a test, ..."""
    os.environ["CLIPSEARCH_CACHE"] = str(tmp_path_factory.mktemp("user-cache"))
    return Path(os.environ["CLIPSEARCH_CACHE"])


@pytest.fixture(autouse=True)
def user_cache(session_cache, tmp_path_factory, monkeypatch):
    """... and each test's own, so that what one test exported or hashed is not found by
    the next. Processes the tests start inherit it."""
    folder = tmp_path_factory.mktemp("user-cache")
    monkeypatch.setenv("CLIPSEARCH_CACHE", str(folder))
    return folder


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


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server on a Unix socket (run as `postgres` when we are root:
    the server refuses root). Yields a function that makes a fresh database's URL."""
    with contextlib.ExitStack() as stack:
        try:
            fresh_database = stack.enter_context(throwaway_postgres())
        except PostgresUnavailable as e:
            pytest.skip(str(e))
        yield fresh_database
