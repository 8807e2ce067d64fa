"""`clipsearch index` yields to interactive work by default: it and its decoding workers
run at a lower priority, with OpenMP threads that sleep instead of spinning."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers import make_image, processes_marked

from clipsearch.indexing.priority import NICE


def nice_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def cmdline_of(pid: int) -> bytes:
    """Short-lived helpers a library runs (ldconfig and the like) come and go with their
    own environment; the decoding workers and the resource tracker stay."""
    return Path(f"/proc/{pid}/cmdline").read_bytes()


@pytest.mark.parametrize(
    ("mode", "nice", "policy"), [("background", NICE, "PASSIVE"), ("foreground", 0, None)]
)
def test_the_indexer_and_its_workers_yield_in_the_background(tmp_path, mode, nice, policy):
    for i in range(6):
        make_image(tmp_path / "p" / f"{i}.png", seed=i)
    marker = str(uuid.uuid4())
    env = {**os.environ, "CLIPSEARCH_FAULT": "batch-committed:batch 1.=sleep:30", "RUN": marker}
    env.pop("OMP_WAIT_POLICY", None)
    args = [str(tmp_path / "p"), "--store", str(tmp_path / "s"), "-m", "random:tiny"]
    args += ["--batch-size", "2", "--workers", "2", f"--{mode}"]
    proc = subprocess.Popen([sys.executable, "-m", "clipsearch", "index", *args], env=env)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(processes_marked(f"RUN={marker}")) < 4:
            time.sleep(0.2)  # the indexer, its resource tracker and its decoding workers
        pids = processes_marked(f"RUN={marker}")
        assert proc.pid in pids and len(pids) >= 3
        assert nice_of(proc.pid) == nice
        for pid in pids:  # decoding workers go lower still, below the model
            assert nice_of(pid) >= nice
        children = [pid for pid in pids if b"multiprocessing" in cmdline_of(pid)]
        assert len(children) >= 3  # the resource tracker and two decoding workers
        for pid in children:  # /proc shows a process's starting environment
            assert environ_of(pid).get("OMP_WAIT_POLICY") == policy
    finally:
        proc.kill()
        proc.wait()
