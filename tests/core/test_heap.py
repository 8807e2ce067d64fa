"""Large blocks a batch frees are kept for the next batch, and given back after."""

from __future__ import annotations

import resource

import numpy as np
import pytest

from clipsearch.core import heap

pytestmark = pytest.mark.skipif(heap._glibc() is None, reason="not glibc's malloc")

PAGES = 20 * 2**20 // 4096  # a block of 20 MB, as a ViT-B/32 layer frees at batch 32


def layers(n: int) -> None:
    """What a forward pass does to the heap: two large blocks made, written, freed."""
    for _ in range(n):
        a = np.ones(PAGES * 1024, dtype=np.float32)
        b = np.ones(PAGES * 1024, dtype=np.float32)
        del b, a


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def resident_pages() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1])


def test_blocks_freed_within_are_used_again_without_faulting_their_pages_in():
    with heap.reusing_freed_memory():
        layers(1)  # the heap grows to the two blocks once
        before = faults()
        layers(10)
        faulted = faults() - before
    assert faulted < PAGES // 10  # ten passes over two blocks would fault 20 blocks' pages


def test_what_the_heap_holds_free_goes_back_after():
    with heap.reusing_freed_memory():
        layers(2)
        held = resident_pages()
    assert held - resident_pages() > PAGES  # both blocks' pages went back
