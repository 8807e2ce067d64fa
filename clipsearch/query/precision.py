"""Which precision CPU text queries use on a store: the fastest that finds what fp32 finds.

Three precisions can make a text query faster on a CPU than fp32: dynamic int8, fp16
weights with fp32 arithmetic (half the bytes to read), and bf16 where the CPU has it in
hardware. Their vectors differ from fp32 ones by rounding: int8's by far the most (1 -
cosine ~1e-3 against ~2e-7 for fp16 weights on ViT-B/32), bf16's 8-bit mantissa more than
fp16 weights'. How far that moves results depends on the weights (activation outliers in
some released models) and on how crowded a store is, so it cannot be settled once,
offline, for everybody. Instead each store checks each model the first time a Library asks
it for a second text query (one query would not repay the faster tower's preparation):
probe texts are encoded in fp32 and in a candidate precision and searched, and the
candidate is used if the two top-10s agree as well as the vector indexes agree with exact
search. Candidates are tried fastest first; the verdicts are remembered by weights digest
and checked again when the store has grown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

from ..core.memo import MemoFile
from ..core.prompts import AGREEMENT_TARGET, SEARCH_PROMPTS
from ..models.precisions import CANDIDATES

if TYPE_CHECKING:
    from ..models.encoder import Encoder

RECHECK_GROWTH = 4  # check again once the store holds this many times the vectors checked on


def agreement(
    fp32: Encoder,
    other: Encoder,
    top_ids: Callable[[np.ndarray], Sequence[int]],
    probes: Sequence[str] = SEARCH_PROMPTS,
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
    passing = [p for p in CANDIDATES if found.get(p, 0.0) >= AGREEMENT_TARGET]
    return passing[0] if passing else "fp32"


@dataclass(frozen=True)
class Verdict:
    """A store's check of the faster text towers: how many vectors it was made on, each
    candidate's top-10 agreement with fp32, and the precision text queries use."""

    vectors: int
    agreement: dict[str, float]
    uses: str


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

    def verdicts(self) -> dict[str, Verdict]:
        """For `status`: by digest, what the last check found and what text queries use
        (where torch has the kernels for it: `status` does not import torch to ask)."""
        return {
            digest: Verdict(vectors, found, choose(found))
            for digest, (vectors, found) in self._entries().items()
        }

    def put(self, digest: str, vectors: int, found: Mapping[str, float]) -> None:
        entries = self.read()
        agreement = {p: round(a, 4) for p, a in found.items()}
        entries[digest] = {"vectors": vectors, "agreement": agreement}
        self.write(entries)


class Stage(Enum):
    """Where a model's text queries stand in a process, under precision auto on a CPU."""

    FIRST_ANSWERED = "the first query was answered by the fp32 tower"
    SETTLED = "the faster tower is in use, or fp32 stays"


Searcher = Callable[[], tuple[Callable[[np.ndarray], Sequence[int]], int]]


class TextTowers:
    """Chooses, per model, the text tower that answers a Library's queries.

    The first text query is answered by the fp32 tower, which is loaded anyway to learn
    the weights digest and is ready at once; a faster one costs fractions of a second to
    prepare (quantising, packing, tracing), which a single query never wins back (a
    `clipsearch query` command asks once). The second query settles it: the fastest
    candidate that this store's check passes, prepared and traced now, else fp32 for good.
    """

    def __init__(self, checks: PrecisionChecks, load: Callable[[str, str], Encoder]):
        self.checks = checks
        self.load = load  # (spec, precision) -> a text-only Encoder
        self.stage: dict[str, Stage] = {}

    def after_query(self, spec: str, fp32: Encoder, searcher: Searcher) -> Encoder | None:
        """The tower to use from now on in place of `fp32`, or None to keep it. searcher
        gives (top-10 ids of a vector, vectors in the store) and may raise where the store
        has no vectors of this model yet: the stage is then left for a later query."""
        stage = self.stage.get(fp32.text_key)
        if stage is None:
            self.stage[fp32.text_key] = Stage.FIRST_ANSWERED
            return None
        if stage is Stage.SETTLED:
            return None
        faster = self._fastest_agreeing(spec, fp32, *searcher())
        self.stage[fp32.text_key] = Stage.SETTLED
        return faster

    def _fastest_agreeing(
        self, spec: str, fp32: Encoder, top_ids: Callable[[np.ndarray], Sequence[int]], n: int
    ) -> Encoder | None:
        """Checks the candidates not yet checked on this store, fastest first."""
        from ..models.encoder import reduced_precisions

        found = self.checks.get(fp32.text_key, n) or {}
        for precision in reduced_precisions():
            encoder = None
            if precision not in found:
                encoder = self.load(spec, precision)
                found[precision] = agreement(fp32, encoder, top_ids)
                self.checks.put(fp32.text_key, n, found)
            if found[precision] >= AGREEMENT_TARGET:
                encoder = encoder or self.load(spec, precision)
                encoder.warm_up_text()  # this Library asks repeatedly: worth tracing now
                return encoder
        return None
