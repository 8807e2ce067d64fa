"""Whether text queries on a CPU may use int8: only where it finds what fp32 finds.

Dynamic int8 makes a ViT-B/32 text query about 1.7x faster on a CPU without native bf16
(BENCHMARKS.md), and its vectors differ from fp32 ones by rounding. How far that rounding
moves results depends on the weights (activation outliers in some released models) and on
how crowded a store is, so it cannot be settled once, offline, for everybody. Instead each
store checks each model the first time a text query needs it: probe texts are encoded both
ways and searched, and int8 is used if the two top-10s agree as well as the vector indexes
agree with exact search (the presets are tuned to that recall). The verdict is remembered
by weights digest and checked again when the store has grown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .memo import MemoFile
from .vectors import TUNE_RECALL

if TYPE_CHECKING:
    from .encoder import Encoder

MIN_AGREEMENT = TUNE_RECALL
RECHECK_GROWTH = 4  # check again once the store holds this many times the vectors checked on

# What people search photo archives, catalogues and datasets for: everyday subjects,
# scenes, documents, single words and longer sentences.
PROBES = (
    "a dog",
    "a cat sleeping on a sofa",
    "a beach at sunset",
    "snow on the mountains",
    "a city street at night",
    "a birthday cake with candles",
    "a group of friends smiling at the camera",
    "a baby",
    "a red car parked by the road",
    "a plate of pasta",
    "fruit in a bowl",
    "flowers in a garden",
    "a screenshot of a phone",
    "a scanned document with text",
    "a bird on a branch",
    "a horse in a field",
    "a forest path in autumn",
    "a boat on a lake",
    "a wedding",
    "children playing football",
    "a bicycle",
    "a laptop on a desk",
    "a selfie",
    "a crowd at a concert",
    "fireworks",
    "a bridge over a river",
    "an old stone church",
    "a christmas tree",
    "a child's drawing",
    "a map",
    "a kitchen",
    "an airplane in the sky",
)


def agreement(
    fp32: Encoder,
    int8: Encoder,
    top_ids: Callable[[np.ndarray], Sequence[int]],
    probes: Sequence[str] = PROBES,
) -> float:
    """Mean share of each probe's fp32 results that its int8 vector also finds."""
    shares = []
    for a, b in zip(fp32.encode_text(probes), int8.encode_text(probes)):
        want = set(top_ids(a))
        if want:
            shares.append(len(want & set(top_ids(b))) / len(want))
    return float(np.mean(shares)) if shares else 1.0


class Int8Checks(MemoFile):
    """Agreement found per weights digest, with the number of vectors it was found on."""

    def _entries(self) -> dict[str, tuple[int, float]]:
        """(vectors checked on, agreement) by digest; damaged entries left out."""
        out = {}
        for digest, entry in self.read().items():
            try:
                out[digest] = int(entry["vectors"]), float(entry["agreement"])
            except (KeyError, TypeError, ValueError):
                continue
        return out

    def get(self, digest: str, vectors: int) -> float | None:
        """The remembered agreement, or None if unchecked or checked on a much smaller store."""
        entry = self._entries().get(digest)
        if entry is None or vectors >= RECHECK_GROWTH * entry[0]:
            return None
        return entry[1]

    def verdicts(self) -> dict[str, dict]:
        """For `status`: by digest, what the last check found and whether text queries use
        int8."""
        return {
            digest: {"agreement": found, "vectors": vectors, "int8": found >= MIN_AGREEMENT}
            for digest, (vectors, found) in self._entries().items()
        }

    def put(self, digest: str, vectors: int, agreement: float) -> None:
        entries = self.read()
        entries[digest] = {"agreement": round(agreement, 4), "vectors": vectors}
        self.write(entries)
