"""A local Ray instance that `index --ray` started ends with the run, even a killed one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers import make_image

from clipsearch.core.faults import VARIABLE

pytest.importorskip("ray", reason='Ray is not installed (pip install "clipsearch[ray]")')


def holding_files_under(folder: Path) -> list[str]:
    """The processes with a file open under `folder`, by name: the instance's own."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and any(
                os.readlink(fd).startswith(f"{folder}/") for fd in (proc / "fd").iterdir()
            ):
                found.append((proc / "comm").read_text().strip())
        except OSError:
            continue
    return found


def test_a_killed_driver_takes_its_own_ray_instance_with_it(tmp_path):
    """Agents included: left to themselves they wait 60 s to tell the dead GCS that their
    raylet died."""
    photos = tmp_path / "photos"
    for i in range(12):
        make_image(photos / f"img{i:02d}.png", seed=i)
    command = [sys.executable, "-m", "clipsearch", "index", str(photos), "-m", "random:tiny"]
    command += ["--store", str(tmp_path / "s"), "--ray", "--batch-size", "4", "--foreground"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local instance
    with tempfile.TemporaryDirectory(prefix="ray", dir="/tmp") as ray_files:  # short: sockets
        env |= {VARIABLE: "batch-committed:batch 2.=kill", "RAY_TMPDIR": ray_files}
        killed = subprocess.run(command, env=env, capture_output=True)
        assert killed.returncode == -signal.SIGKILL
        assert any(Path(ray_files).glob("ray/session_*")), "the run started no Ray instance"
        deadline = time.time() + 15
        while (left := holding_files_under(Path(ray_files))) and time.time() < deadline:
            time.sleep(0.2)
        assert left == []
