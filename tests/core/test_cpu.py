"""free_cores on a machine made busy by the test itself."""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time

import pytest

from clipsearch.core.cpu import free_cores


def spin() -> None:
    while True:
        pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_cores_busy_with_other_processes_are_not_free():
    cores = os.cpu_count() or 1
    assert 1 <= free_cores() <= cores
    hogs = [mp.get_context("fork").Process(target=spin, daemon=True) for _ in range(cores)]
    for hog in hogs:
        hog.start()
    try:
        deadline, seen = time.time() + 10, set()
        while time.time() < deadline and 1 not in seen:
            seen.add(free_cores())
            time.sleep(0.05)
        assert 1 in seen  # every core runs a hog: one thread for a query, not all
    finally:
        for hog in hogs:
            hog.kill()
