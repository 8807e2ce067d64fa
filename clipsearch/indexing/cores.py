"""How indexing on a CPU shares the cores between decoding and the model.

Decoding processes and the model's torch threads run on the same cores. With the model on
every core, the two compete, and the run reaches about OVERSUBSCRIBED of the bound cores /
(decode + model CPU per image). With fewer model threads than cores, the decoders keep
cores of their own and the run goes at the model's pace on its threads. So the model gets
the fewest threads whose pace beats sharing every core: a 12-MP JPEG costs about what
ViT-B/32 in bf16 does (one thread of two), a small PNG or an fp32 model leaves the model
every core (BENCHMARKS.md, Indexing throughput). The costs are measured as the run goes:
the decoding processes report their CPU time, this process's CPU time while the model
embeds is the model's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

OVERSUBSCRIBED = 0.85  # the share of the bound reached with the model on every core


def model_threads(decode_cpu: float, model_cpu: float, cores: int) -> int:
    """The model's threads for these CPU costs of an image (seconds) on `cores` cores."""
    total = decode_cpu + model_cpu
    if total <= 0:
        return cores
    return max(1, min(cores, math.ceil(OVERSUBSCRIBED * cores * model_cpu / total)))


class CoreShare:
    """Torch's thread count, set after each batch by model_threads from the costs so far,
    and given back when the run ends. Never more threads than the run started with
    (--threads, OMP_NUM_THREADS). The first batch is not counted: its time is mostly the
    model warming up."""

    def __init__(
        self, decode_cost: Callable[[], float], other_cpu: Callable[[], float] = lambda: 0.0
    ):
        import torch

        self.torch = torch
        self.cores = torch.get_num_threads()
        self.decode_cost = decode_cost  # CPU seconds an image has cost the decoders so far
        self.other_cpu = other_cpu  # this process's CPU seconds spent on other work so far
        self.batches = 0
        self.model_cpu = 0.0
        self.images = 0

    def after_batch(self, images: int, model_cpu: float) -> int:
        """Count a batch the model embedded in `model_cpu` CPU seconds; the threads now."""
        self.batches += 1
        if self.batches > 1:
            self.model_cpu += model_cpu
            self.images += images
            threads = model_threads(self.decode_cost(), self.model_cpu / self.images, self.cores)
            if threads != self.torch.get_num_threads():
                self.torch.set_num_threads(threads)
        return self.torch.get_num_threads()

    @contextmanager
    def measuring(self, images: int) -> Iterator[None]:
        """Count the batch embedded in the block: this process's CPU time, less what its
        other work (the writer thread's commits) spent meanwhile."""
        before, others = time.process_time(), self.other_cpu()
        yield
        self.after_batch(images, time.process_time() - before - (self.other_cpu() - others))

    def close(self) -> None:
        self.torch.set_num_threads(self.cores)
