"""glibc's malloc, told to keep what a batch frees for the next batch.

A model's forward pass allocates tens of megabytes a layer and frees them a moment later.
By default glibc gives such blocks back to the system as they are freed (its mmap
threshold adapts up to 32 MB, and it trims the heap's top past twice that), so the next
layer's pages are faulted in and zeroed by the kernel again: indexing 300 small images
with ViT-B/32 in fp32 took about a million page faults and 3.3-4.1 s of system time (of
20 s) on two cores; kept, 150,000 and 0.8-1.7 s (`/usr/bin/time -f "%S %R" clipsearch
index`, three interleaved pairs).
Keeping them costs no memory the process did not hold at its peak already, and it is
given back when the work ends. Elsewhere than glibc nothing changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
from collections.abc import Iterator

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)
LARGEST_FROM_HEAP = 32 * 2**20  # the largest mmap threshold glibc takes on 64-bit systems
KEPT_FREE = 2**31 - 1  # the largest trim threshold (an int): free memory stays in the heap
TRIM_DEFAULT = 128 * 2**10  # glibc's own


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        libc = ctypes.CDLL(None)
    except (AttributeError, ValueError, OSError):  # not glibc (macOS, musl, Windows)
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


@contextlib.contextmanager
def reusing_freed_memory() -> Iterator[None]:
    """Within: large blocks come from the heap and stay there when freed. After: the
    heap trims as glibc's default does, and what it holds free now goes back."""
    libc = _glibc()
    if libc is None:
        yield
        return
    libc.mallopt(M_MMAP_THRESHOLD, LARGEST_FROM_HEAP)
    libc.mallopt(M_TRIM_THRESHOLD, KEPT_FREE)
    try:
        yield
    finally:
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_DEFAULT)
        libc.malloc_trim(0)
