"""Which precision CPU text queries use on a store: the fastest that finds what fp32 finds.

Two precisions make a ViT-B/32 text query faster on a CPU without native bf16: dynamic int8
(~2.5x, BENCHMARKS.md) and fp16 weights with fp32 arithmetic (~1.7x, half the bytes to
read). Their vectors differ from fp32 ones by rounding: int8's by far more (1 - cosine
~1e-3 against ~2e-7 on ViT-B/32). How far that moves results depends on the weights
(activation outliers in some released models) and on how crowded a store is, so it cannot
be settled once, offline, for everybody. Instead each store checks each model the first
time a Library asks it for a second text query (one query would not repay the faster
tower's preparation): probe texts are encoded in fp32 and in a candidate precision
and searched, and the candidate is used if the two top-10s agree as well as the vector
indexes agree with exact search (the presets are tuned to that recall). Candidates are
tried fastest first; the verdicts are remembered by weights digest and checked again when
the store has grown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .memo import MemoFile
from .vectors import TUNE_RECALL

if TYPE_CHECKING:
    from .encoder import Encoder

CANDIDATES = ("int8", "fp16")  # fastest first
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
    other: Encoder,
    top_ids: Callable[[np.ndarray], Sequence[int]],
    probes: Sequence[str] = PROBES,
) -> float:
    """Mean share of each probe's fp32 results that its other vector also finds."""
    shares = []
    for a, b in zip(fp32.encode_text(probes), other.encode_text(probes)):
        want = set(top_ids(a))
        if want:
            shares.append(len(want & set(top_ids(b))) / len(want))
    return float(np.mean(shares)) if shares else 1.0


def choose(found: Mapping[str, float]) -> str:
    """The fastest candidate whose agreement passes, else fp32."""
    passing = [p for p in CANDIDATES if found.get(p, 0.0) >= MIN_AGREEMENT]
    return passing[0] if passing else "fp32"


class PrecisionChecks(MemoFile):
    """Agreement found per weights digest and candidate, with the number of vectors it
    was found on."""

    def _entries(self) -> dict[str, tuple[int, dict[str, float]]]:
        """(vectors checked on, {candidate: agreement}) by digest; damaged entries left out."""
        out = {}
        for digest, entry in self.read().items():
            try:
                found = {p: float(a) for p, a in entry["agreement"].items() if p in CANDIDATES}
                out[digest] = int(entry["vectors"]), found
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
        return out

    def get(self, digest: str, vectors: int) -> dict[str, float] | None:
        """What the last check found, or None if unchecked or checked on a much smaller
        store."""
        entry = self._entries().get(digest)
        if entry is None or vectors >= RECHECK_GROWTH * entry[0]:
            return None
        return entry[1]

    def verdicts(self) -> dict[str, dict]:
        """For `status`: by digest, what the last check found and what text queries use
        (where torch has the kernels for it: `status` does not import torch to ask)."""
        return {
            digest: {"vectors": vectors, "agreement": found, "uses": choose(found)}
            for digest, (vectors, found) in self._entries().items()
        }

    def put(self, digest: str, vectors: int, found: Mapping[str, float]) -> None:
        entries = self.read()
        agreement = {p: round(a, 4) for p, a in found.items()}
        entries[digest] = {"vectors": vectors, "agreement": agreement}
        self.write(entries)
