"""Decoding images in worker processes, a few batches ahead of the model.

Decoded squares come back through shared memory where the system offers an anonymous
in-memory file (Linux's memfd): the workers write each square into its batch's slot, and
the model's process reads it there, instead of receiving 150 KB of pickle per image
through a pipe (bench/index_throughput.py --transfer compares the two). The file has no
name and goes with the last process that holds it, so nothing is left behind, whatever
way the run ends. Elsewhere, or where a worker cannot open it, the squares come back
pickled.

Workers are spawned (they import PIL and numpy, never the parent's torch and its threads)
and end with their parent however it ends: the kernel signals them when it dies (Linux),
and each also watches its parent, so a kill -9 of `clipsearch index` leaves no process
behind. Ctrl-C is the parent's to handle. A worker that dies (the out-of-memory killer, a
crashing decoder) costs only the file that killed it: its batch is decoded again one file
at a time, and the file that kills a worker a second time is recorded as failed.
"""

from __future__ import annotations

import contextlib
import mmap
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
from dataclasses import dataclass

import numpy as np

from ..core.errors import ClipsearchError
from ..images.pixels import Preprocessing
from .worker import decode_many


class DecodingError(ClipsearchError):
    """The decoding processes cannot run at all (not one file's fault)."""


Scanned = tuple[str, tuple[int, int]]  # path, (size, mtime_ns) as scanned
Decoded = tuple  # (pixels | None, ImageInfo | None, error | None)
WORKER_DIED = "the decoding process died on this file (out of memory, or a decoder crash)"
PR_SET_PDEATHSIG = 1
# Decoding runs below the model's priority: an OpenMP region waits for its slowest thread,
# so a model thread preempted by a decoder stalls the whole operation; decoders lower
# down work in the gaps instead (BENCHMARKS.md, Indexing throughput).
BELOW_THE_MODEL = 19


def default_workers() -> int:
    """Decoding processes for indexing: one per core. They only decode a few batches ahead
    and then wait, so on a CPU they take the cores the model leaves."""
    return os.cpu_count() or 2


def quiet_resource_tracker() -> None:
    """Start multiprocessing's resource tracker with its stderr on /dev/null. It outlives
    a kill -9 of this process and then warns of the pool's semaphores, which it cleans up
    all the same: a warning that reached the terminal after the prompt came back."""
    from multiprocessing import resource_tracker

    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        resource_tracker.ensure_running()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


@contextlib.contextmanager
def born_ignoring_ctrl_c() -> Iterator[None]:
    """Processes spawned in the block ignore SIGINT from their first instruction (an
    ignored signal stays ignored across exec, and Python keeps it so): a Ctrl-C while they
    import their modules is the parent's alone, not a traceback from each of them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


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


IN_SLOT = "in its slot"  # a worker's stand-in for pixels it wrote to shared memory


@dataclass(frozen=True)
class Slots:
    """Where the workers write squares: `shape` (batches, batch size, size, size, 3) of
    uint8 in the memfd at `path`. Its device and inode tell it from whatever that path
    names once the memfd is closed (the parent's next file may get its number)."""

    path: str
    device: int
    inode: int
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))


@dataclass(frozen=True)
class Into:
    """A piece's place: its batch's slot, and the position in it of its first file."""

    slots: Slots
    slot: int
    start: int


_attached: dict[Slots, np.ndarray] = {}  # in a worker: the slots it has mapped


def _slot_array(slots: Slots) -> np.ndarray | None:
    """The slots as an array in this worker, mapped once; None where they cannot be
    opened (no /proc, a parent that may not be read), and the pixels go back pickled."""
    if slots not in _attached:
        try:
            with open(slots.path, "r+b") as f:
                st = os.fstat(f.fileno())
                if (st.st_dev, st.st_ino) != (slots.device, slots.inode):
                    return None  # a task of a run that has ended: not that file any more
                mapped = mmap.mmap(f.fileno(), slots.nbytes)
        except (OSError, ValueError):
            return None
        _attached.clear()  # an earlier run's slots: unmapped when their array goes
        _attached[slots] = np.frombuffer(mapped, np.uint8).reshape(slots.shape)
    return _attached[slots]


def decode_timed(
    items: Sequence[Scanned], prep: Preprocessing | None, into: Into | None = None
) -> tuple[list, float]:
    """decode_many, and the CPU seconds it took in this process. With `into`, the squares
    go into shared memory and IN_SLOT comes back in their place."""
    started = time.process_time()
    decoded = decode_many(items, prep)
    array = _slot_array(into.slots) if into is not None else None
    if array is not None:
        target = array[into.slot]
        for position, (pixels, info, error) in enumerate(decoded, into.start):
            if pixels is not None and pixels.shape == target.shape[1:]:
                target[position] = pixels
                decoded[position - into.start] = (IN_SLOT, info, error)
    return decoded, time.process_time() - started


class SharedPixels:
    """The parent's side of the slots: a memfd of `ahead` batches of squares (pages are
    only taken as they are written: ahead x batch x size² x 3 bytes at most, 19 MB for 4
    batches of 32 at 224). None of it where the system has no memfd."""

    def __init__(self, shape: tuple[int, ...]):
        self.fd = os.memfd_create("clipsearch-pixels", os.MFD_CLOEXEC)
        try:
            st = os.fstat(self.fd)
            path = f"/proc/{os.getpid()}/fd/{self.fd}"
            self.slots = Slots(path, st.st_dev, st.st_ino, shape)
            os.ftruncate(self.fd, self.slots.nbytes)
            mapped = mmap.mmap(self.fd, self.slots.nbytes)
        except OSError:
            os.close(self.fd)
            raise
        self.array = np.frombuffer(mapped, np.uint8).reshape(shape)

    @classmethod
    def available(cls) -> bool:
        return hasattr(os, "memfd_create") and os.path.isdir(f"/proc/{os.getpid()}/fd")

    def close(self) -> None:
        """The parent's hold on the file; the mapping goes with the last array viewing it."""
        os.close(self.fd)


class DecodePool:
    """Decodes batches of files in `workers` processes, in order, `ahead` batches ahead.
    The processes start at once (`start`), so that they are ready when the model is.
    `cpu_seconds` / `images`: what decoding has cost so far, for sharing the cores.
    `shared`: squares come back through shared memory where the system allows it."""

    def __init__(self, workers: int, ahead: int | None = None, shared: bool = True):
        self.workers = workers
        self.ahead = ahead if ahead is not None else workers + 2
        self.preprocessing: Preprocessing | None = None
        self.cpu_seconds = 0.0
        self.images = 0
        self.shared = shared and SharedPixels.available()
        self._pixels: SharedPixels | None = None
        self._pool = self._start()
        self._warming: list[Future] = []

    def cpu_per_image(self) -> float:
        """CPU seconds an image has cost the decoding processes so far."""
        return self.cpu_seconds / max(1, self.images)

    def start(self) -> None:
        """Spawn the processes now, in the background (a pool spawns them on demand), and
        have each import the decoders (PIL, numpy), so the first batch finds them ready."""
        with born_ignoring_ctrl_c():
            self._warming = [self._pool.submit(decode_many, [], None) for _ in range(self.workers)]

    def ready(self) -> None:
        """Wait until the processes `start` began are up."""
        for future in self._warming:
            future.result()

    def _start(self) -> ProcessPoolExecutor:
        quiet_resource_tracker()
        return ProcessPoolExecutor(
            self.workers,
            mp_context=mp.get_context("spawn"),
            initializer=_die_with_parent,
            initargs=(os.getpid(),),
        )

    def _restart(self) -> None:
        """A new pool, checked with a task that cannot fail: if a worker dies even then,
        no file is to blame and the run cannot go on."""
        self._pool.shutdown(wait=True, cancel_futures=True)  # its workers gone, none writes again
        self._pool = self._start()
        try:
            with born_ignoring_ctrl_c():
                checked = self._pool.submit(os.getpid)
            checked.result()
        except BrokenProcessPool:
            raise DecodingError(
                "the decoding processes die as they start; if a Python script runs the "
                'indexing, put it under `if __name__ == "__main__":` (they start by '
                "importing it), else run with --workers 1 and --debug and report it"
            ) from None

    def _submit(self, batch: Sequence[Scanned], slot: int, start: int = 0) -> list[Future]:
        """A batch in one piece per worker: all of them decode the first batch (which the
        model waits for), and a batch of big photos is not left to one process. Its
        squares go to the batch's slot, from position `start`."""
        step = -(-len(batch) // self.workers)
        futures = []
        for i in range(0, len(batch), step):
            into = self._into(slot, start + i)
            futures.append(
                self._pool.submit(decode_timed, list(batch[i : i + step]), self.preprocessing, into)
            )
        return futures

    def _into(self, slot: int, start: int) -> Into | None:
        return Into(self._pixels.slots, slot, start) if self._pixels is not None else None

    def _gather(self, futures: list[Future], slot: int, start: int = 0) -> list[Decoded]:
        """The pieces' files in order, their CPU time counted; squares in shared memory
        are read in place."""
        decoded = []
        for future in futures:
            piece, seconds = future.result()
            decoded += piece
            self.cpu_seconds += seconds
        self.images += len(decoded)
        out = []
        for position, (pixels, info, error) in enumerate(decoded, start):
            if isinstance(pixels, str):  # IN_SLOT
                pixels = self._pixels.array[slot, position]
            out.append((pixels, info, error))
        return out

    def decode(
        self, batches: Sequence[Sequence[Scanned]], preprocessing: Preprocessing
    ) -> Iterator[list[Decoded]]:
        """Each batch's decoded files, in the order given. A square may be a view of
        shared memory: it is valid until the next batch is asked for."""
        self.preprocessing = preprocessing
        self._share(max((len(b) for b in batches), default=0), preprocessing.size)
        queue = deque(enumerate(batches))
        pending: deque[tuple[int, Sequence[Scanned], list[Future]]] = deque()
        try:
            while queue or pending:
                self._fill(queue, pending)
                number, batch, futures = pending.popleft()
                slot = number % self.ahead
                try:
                    decoded = self._gather(futures, slot)
                except BrokenProcessPool:  # every batch in flight is lost with the pool
                    queue.extendleft(reversed([(n, b) for n, b, _ in pending]))
                    pending.clear()
                    self._restart()
                    decoded = self._one_by_one(batch, slot)
                yield decoded
        finally:
            if pending:  # stopped early: what still runs must not write where a later run reads
                for _, _, futures in pending:
                    for future in futures:
                        future.cancel()
                self._unshare()

    def _fill(self, queue: deque, pending: deque) -> None:
        """Submit batches until `ahead` are in flight. A pool that broke meanwhile (a
        worker died while the model ran) refuses them: they wait, and the gather of a batch
        in flight restarts it; with none in flight, it restarts here."""
        while queue and len(pending) < self.ahead:
            number, batch = queue[0]
            try:
                futures = self._submit(batch, number % self.ahead)
            except BrokenProcessPool:
                if pending:
                    return
                self._restart()
                continue
            queue.popleft()
            pending.append((number, batch, futures))

    def _share(self, longest: int, size: int) -> None:
        """Slots for `ahead` batches of `longest` squares of `size`: the last run's where
        the shape is the same (its squares are no longer read), else new ones; none, and
        pickles, where the system refuses them (no memory, no file descriptors left)."""
        if not self.shared or longest == 0:
            return
        shape = (self.ahead, longest, size, size, 3)
        if self._pixels is not None and self._pixels.slots.shape == shape:
            return
        self._unshare()
        try:
            self._pixels = SharedPixels(shape)
        except OSError:
            self.shared = False

    def _unshare(self) -> None:
        if self._pixels is not None:
            self._pixels.close()
            self._pixels = None

    def _one_by_one(self, batch: Sequence[Scanned], slot: int) -> list[Decoded]:
        out = []
        for position, item in enumerate(batch):
            try:
                out += self._gather(self._submit([item], slot, position), slot, position)
            except BrokenProcessPool:
                self._restart()
                out.append((None, None, WORKER_DIED))
        return out

    def close(self) -> None:
        """Stop the workers once the batches they are decoding are done (those waiting are
        cancelled): a prompt stop, with nothing left for the resource tracker to warn of."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._unshare()

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
