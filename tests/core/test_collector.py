"""The cycle collector is paused while a model loads, and runs again after."""

from __future__ import annotations

import gc

from clipsearch import Library
from clipsearch.core import collector


class Collections:
    """Counts the collections that start while it is installed."""

    def __init__(self):
        self.started = 0

    def __call__(self, phase: str, info: dict) -> None:
        self.started += phase == "start"

    def __enter__(self):
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc):
        gc.callbacks.remove(self)


def test_paused_within_and_running_after_even_when_nested():
    assert gc.isenabled()
    with collector.paused():
        with collector.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_library_loads_its_model_without_collecting_and_collects_after(tmp_path):
    with Library(tmp_path / "store", create=True) as lib:
        with Collections() as loading:
            lib.encoder("random:tiny")  # unpaused: 3 here, 300 in a process importing torch
        assert loading.started <= 1  # the one the pause's end sets off
        with Collections() as after:
            junk = [[i] for i in range(10_000)]  # containers: counted towards a collection
        assert after.started > 0 and len(junk) == 10_000
