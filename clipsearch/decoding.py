"""Decoding images in worker processes, a few batches ahead of the model.

Workers are spawned (they import PIL and numpy, never the parent's torch and its threads)
and end with their parent however it ends: the kernel signals them when it dies (Linux),
and each also watches its parent, so a kill -9 of `clipsearch index` leaves no process
behind. Ctrl-C is the parent's to handle. A worker that dies (the out-of-memory killer, a
crashing decoder) costs only the file that killed it: its batch is decoded again one file
at a time, and the file that kills a worker a second time is recorded as failed.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from .errors import ClipsearchError
from .preprocess import Preprocessing, decode_many


class DecodingError(ClipsearchError):
    """The decoding processes cannot run at all (not one file's fault)."""


Item = tuple[str, tuple[int, int]]  # path, (size, mtime_ns) as scanned
Decoded = tuple  # (pixels | None, ImageInfo | None, error | None)
WORKER_DIED = "the decoding process died on this file (out of memory, or a decoder crash)"
PR_SET_PDEATHSIG = 1
# Decoding runs below the model's priority: an OpenMP region waits for its slowest thread,
# so a model thread preempted by a decoder stalls the whole operation; decoders lower
# down work in the gaps instead (BENCHMARKS.md, Indexing throughput).
BELOW_THE_MODEL = 19


def _die_with_parent(parent: int) -> None:
    """Worker initialiser: run below the model, leave when the parent goes, and let it
    alone handle Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(BELOW_THE_MODEL)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def decode_timed(items: Sequence[Item], prep: Preprocessing | None) -> tuple[list, float]:
    """decode_many, and the CPU seconds it took in this process."""
    started = time.process_time()
    decoded = decode_many(items, prep)
    return decoded, time.process_time() - started


class DecodePool:
    """Decodes batches of files in `workers` processes, in order, `ahead` batches ahead.
    The processes start at once (`start`), so that they are ready when the model is.
    `cpu_seconds` / `images`: what decoding has cost so far, for sharing the cores."""

    def __init__(self, workers: int, ahead: int | None = None):
        self.workers = workers
        self.ahead = ahead if ahead is not None else workers + 2
        self.preprocessing: Preprocessing | None = None
        self.cpu_seconds = 0.0
        self.images = 0
        self._pool = self._start()
        self._warming: list[Future] = []

    def start(self) -> None:
        """Spawn the processes now, in the background (a pool spawns them on demand), and
        have each import the decoders (PIL, numpy), so the first batch finds them ready."""
        self._warming = [self._pool.submit(decode_many, [], None) for _ in range(self.workers)]

    def ready(self) -> None:
        """Wait until the processes `start` began are up."""
        for future in self._warming:
            future.result()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.workers,
            mp_context=mp.get_context("spawn"),
            initializer=_die_with_parent,
            initargs=(os.getpid(),),
        )

    def _restart(self) -> None:
        """A new pool, checked with a task that cannot fail: if a worker dies even then,
        no file is to blame and the run cannot go on."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._start()
        try:
            self._pool.submit(os.getpid).result()
        except BrokenProcessPool:
            raise DecodingError(
                "the decoding processes die as they start; if a Python script runs the "
                'indexing, put it under `if __name__ == "__main__":` (they start by '
                "importing it), else run with --workers 1 and --debug and report it"
            ) from None

    def _submit(self, batch: Sequence[Item]) -> list[Future]:
        """A batch in one piece per worker: all of them decode the first batch (which the
        model waits for), and a batch of big photos is not left to one process."""
        step = -(-len(batch) // self.workers)
        pieces = [list(batch[i : i + step]) for i in range(0, len(batch), step)]
        return [self._pool.submit(decode_timed, piece, self.preprocessing) for piece in pieces]

    def _gather(self, futures: list[Future]) -> list[Decoded]:
        """The pieces' files in order, their CPU time counted."""
        decoded = []
        for future in futures:
            piece, seconds = future.result()
            decoded += piece
            self.cpu_seconds += seconds
        self.images += len(decoded)
        return decoded

    def decode(
        self, batches: Sequence[Sequence[Item]], preprocessing: Preprocessing
    ) -> Iterator[list[Decoded]]:
        """Each batch's decoded files, in the order given."""
        self.preprocessing = preprocessing
        queue = deque(batches)
        pending: deque[tuple[Sequence[Item], list[Future]]] = deque()
        while queue or pending:
            while queue and len(pending) < self.ahead:
                batch = queue.popleft()
                pending.append((batch, self._submit(batch)))
            batch, futures = pending.popleft()
            try:
                decoded = self._gather(futures)
            except BrokenProcessPool:  # every batch in flight is lost with the pool
                queue.extendleft(reversed([b for b, _ in pending]))
                pending.clear()
                self._restart()
                decoded = self._one_by_one(batch)
            yield decoded

    def _one_by_one(self, batch: Sequence[Item]) -> list[Decoded]:
        out = []
        for item in batch:
            try:
                out += self._gather(self._submit([item]))
            except BrokenProcessPool:
                self._restart()
                out.append((None, None, WORKER_DIED))
        return out

    def close(self) -> None:
        """Stop the workers once the batches they are decoding are done (those waiting are
        cancelled): a prompt stop, with nothing left for the resource tracker to warn of."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
