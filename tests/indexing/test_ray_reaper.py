"""A local Ray instance that `index --ray` started ends with the run, even a killed one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from helpers import make_image, wait_until_gone

from clipsearch.core.faults import VARIABLE

pytest.importorskip("ray", reason='Ray is not installed (pip install "clipsearch[ray]")')


def test_a_killed_driver_takes_its_own_ray_instance_with_it(tmp_path):
    """Agents included: left to themselves they wait 60 s to tell the dead GCS that their
    raylet died."""
    photos = tmp_path / "photos"
    for i in range(12):
        make_image(photos / f"img{i:02d}.png", seed=i)
    command = [sys.executable, "-m", "clipsearch", "index", str(photos), "-m", "random:tiny"]
    command += ["--store", str(tmp_path / "s"), "--ray", "--batch-size", "4", "--foreground"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local instance
    env |= {VARIABLE: "batch-committed:batch 2.=kill", "CLIPSEARCH_TEST_RUN": tmp_path.name}
    killed = subprocess.run(command, env=env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    assert wait_until_gone(f"CLIPSEARCH_TEST_RUN={tmp_path.name}", seconds=15) == []
