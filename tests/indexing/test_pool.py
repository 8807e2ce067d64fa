"""Decoding processes: squares come back through shared memory where the system allows
it, equal to what a pickle brings, failures and worker deaths included."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import make_image

from clipsearch.images.pixels import Preprocessing, square
from clipsearch.indexing.pool import (
    WORKER_DIED,
    DecodePool,
    Into,
    SharedPixels,
    Slots,
    decode_timed,
)

PREP = Preprocessing(64)
needs_memfd = pytest.mark.skipif(
    not SharedPixels.available(), reason="no memfd here: squares always come back pickled"
)


@pytest.fixture
def batches(tmp_path):
    """Three batches of four files, the sixth not an image."""
    paths = [make_image(tmp_path / f"{i:02d}.png", size=(90 + i, 70), seed=i) for i in range(12)]
    paths[5].write_bytes(b"not an image")
    items = [(str(p), (p.stat().st_size, p.stat().st_mtime_ns)) for p in paths]
    return [items[i : i + 4] for i in range(0, 12, 4)]


def decode_all(pool: DecodePool, batches) -> list[tuple]:
    """Every batch's outcomes, the squares copied before the next batch is asked for (a
    square in shared memory is valid until then)."""
    out = []
    for decoded in pool.decode(batches, PREP):
        out += [(None if p is None else np.array(p), info, error) for p, info, error in decoded]
    return out


def expected(batches) -> list[np.ndarray | None]:
    return [
        None if path.endswith("05.png") else square(path, PREP, draft=True)[0]
        for batch in batches
        for path, _ in batch
    ]


@needs_memfd
def test_squares_come_back_through_shared_memory_equal_to_pickled_ones(batches):
    with DecodePool(2, ahead=2) as pool:
        seen = []
        for decoded in pool.decode(batches, PREP):
            squares = [p for p, _, _ in decoded if p is not None]
            seen += [np.shares_memory(p, pool._pixels.array) for p in squares]
        shared = decode_all(pool, batches)
    with DecodePool(2, shared=False) as pool:
        pickled = decode_all(pool, batches)
        assert pool._pixels is None
    assert seen == [True] * 11
    assert [e for _, _, e in shared] == [e for _, _, e in pickled]
    assert shared[5][2] and shared[5][0] is None  # the broken file, in its place
    for (a, info_a, _), (b, info_b, _), want in zip(shared, pickled, expected(batches)):
        assert info_a == info_b
        if want is None:
            assert a is None and b is None
        else:
            np.testing.assert_array_equal(a, want)
            np.testing.assert_array_equal(b, want)


@needs_memfd
def test_a_batch_decoded_again_after_a_worker_died_lands_in_its_slot(batches, monkeypatch):
    """The pool's restart and the one-by-one pass write each file to its own position."""
    monkeypatch.setenv("CLIPSEARCH_FAULT", "decode:06.png=kill")
    with DecodePool(2, ahead=2) as pool:
        decoded = decode_all(pool, batches)
    want = expected(batches)
    assert decoded[6][2] == WORKER_DIED
    for i, (pixels, _, _) in enumerate(decoded):
        if i not in (5, 6):
            np.testing.assert_array_equal(pixels, want[i])


def test_a_worker_that_cannot_open_the_slots_sends_its_squares_pickled(batches, tmp_path):
    slots = Slots(str(tmp_path / "gone"), 0, 1, (1, 4, 64, 64, 3))
    decoded, seconds = decode_timed(batches[0], PREP, Into(slots, 0, 0))
    assert seconds > 0
    for (pixels, _, _), want in zip(decoded, expected(batches)[:4]):
        np.testing.assert_array_equal(pixels, want)


@needs_memfd
def test_a_run_with_longer_batches_gets_new_slots(batches):
    with DecodePool(1, ahead=1) as pool:
        decode_all(pool, batches[:1])
        first = pool._pixels.slots
        decode_all(pool, [batches[0] + batches[1]])
        assert pool._pixels.slots.shape[1] == 8 and pool._pixels.slots != first


def test_a_task_from_an_ended_run_never_writes_into_another_file(batches, tmp_path):
    """Once the slots' memfd is closed its /proc path may name another file (the catalog,
    say): a worker checks it is the same file before it maps it."""
    other = tmp_path / "catalog.db"
    other.write_bytes(bytes(4 * 64 * 64 * 3))
    slots = Slots(str(other), 0, 0, (1, 4, 64, 64, 3))
    decoded, _ = decode_timed(batches[0], PREP, Into(slots, 0, 0))
    assert all(isinstance(pixels, np.ndarray) for pixels, _, _ in decoded)
    assert other.read_bytes() == bytes(4 * 64 * 64 * 3)


@needs_memfd
def test_a_run_stopped_early_leaves_its_slots_to_no_later_run(batches):
    with DecodePool(1, ahead=2) as pool:
        run = pool.decode(batches, PREP)
        next(run)
        run.close()  # as an error or Ctrl-C in the model would
        assert pool._pixels is None
        assert len(decode_all(pool, batches)) == 12


def test_a_worker_that_dies_between_batches_is_replaced(batches):
    """A worker killed while the model embeds (no batch of it in flight): the next batch
    finds the pool broken when it is handed out, and the pool starts again."""
    import os
    import signal
    import time

    with DecodePool(1, ahead=1) as pool:
        worker = pool._pool.submit(os.getpid).result()
        run = pool.decode(batches, PREP)
        first = [None if p is None else np.array(p) for p, _, _ in next(run)]
        os.kill(worker, signal.SIGKILL)
        deadline = time.time() + 30
        while not pool._pool._broken and time.time() < deadline:
            time.sleep(0.05)
        rest = [None if p is None else np.array(p) for d in run for p, _, _ in d]
    for got, want in zip(first + rest, expected(batches), strict=True):
        if want is None:
            assert got is None
        else:
            np.testing.assert_array_equal(got, want)
