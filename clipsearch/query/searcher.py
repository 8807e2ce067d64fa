"""Answering queries against one store: each model's vector index kept up to date with
what other processes commit, recent query texts kept as vectors (paging and re-filtering
are free), images given by path or id looked up before they are embedded again.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..images.decode import BytesSource, ImageError
from ..storage.catalog_words import Part
from ..storage.loaded_index import LoadedIndex
from ..storage.store import Store
from . import words
from .encoders import Encoders
from .search import (
    Filters,
    QueryError,
    Result,
    Term,
    combine,
    describe,
    filtered_ids,
    hydrate,
    nearest,
)

if TYPE_CHECKING:
    from ..models.encoder import Encoder

TEXT_CACHE_SIZE = 512  # recent query texts kept as vectors
SORTS = ("score", "date", "-date")  # best first; oldest first; newest first
DATE_POOL = 200  # sorted by date: the best this many matches (above min_score)
WORD_POOL = 1000  # files the words of a query may find, best first, before filters


class UnknownFile(QueryError):
    """A catalog id that names no indexed image."""


class UnusableImage(QueryError):
    """An image given as a query that cannot be decoded (the reason says why)."""

    def __init__(self, error: ImageError):
        super().__init__(f"cannot use the image query {error.path}: {error.reason}")
        self.reason = error.reason


@dataclass
class Answer:
    """What a query returned and how it was understood."""

    query: str
    model: str
    results: list[Result]
    index_action: str  # loaded | updated | rebuilt
    timings_ms: dict[str, float] = field(default_factory=dict)  # embed, search, hydrate
    more: bool = False  # whether a next page has results


def by_date(results: list[Result], newest: bool) -> list[Result]:
    return sorted(results, key=lambda r: (r.date, r.file_id), reverse=newest)


class Searcher:
    def __init__(self, store: Store, encoders: Encoders, log_queries: bool):
        self.store = store
        self.catalog = store.catalog
        self.encoders = encoders
        self.log_queries = log_queries
        self._indexes: dict[int, tuple[LoadedIndex, str]] = {}
        self._text_vectors: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()

    def index_for(self, model_id: int) -> tuple[LoadedIndex, str]:
        """The model's index, brought up to what other processes have committed since it
        was loaded (a long-lived Library, such as the server's, sees new and forgotten
        files without a restart)."""
        if model_id not in self._indexes:
            self._indexes[model_id] = self.store.indexes.get(model_id)
        else:
            loaded, action = self._indexes[model_id]
            self._indexes[model_id] = (self.store.indexes.refresh(loaded), action)
        return self._indexes[model_id]

    def top_ids(self, encoder: Encoder):
        """(top-10 file ids of a query vector, vectors searched) in the model's index: what
        the check of a faster text tower compares."""
        loaded, _ = self.index_for(self.encoders.model_row(encoder).id)

        def top(vector: np.ndarray) -> list[int]:
            return [i for i, _ in nearest(self.catalog, loaded, vector, 10)]

        return top, loaded.count

    def search(
        self,
        terms: Sequence[Term],
        k: int = 10,
        model: str | None = None,
        filters: Filters = Filters(),
        min_score: float | None = None,
        exclude_self: bool = False,
        offset: int = 0,
        sort: str = "score",
        mode: str = "hybrid",
    ) -> Answer:
        """Results offset+1 .. offset+k for parsed terms (the same order page after page).
        exclude_self drops images given as terms (by path or id) from the results. `sort`
        "date" (oldest first) or "-date" (newest first) orders the best DATE_POOL matches
        (those above min_score) by date, so that pages of them are stable too. `mode`:
        "hybrid" ranks by vectors and by the words files carry together (words.py),
        "vector" by vectors, "text" by words (each result still scored by its vector)."""
        if k < 1 or offset < 0:
            raise QueryError("k must be at least 1 and the offset at least 0")
        if sort not in SORTS:
            raise QueryError(f"unknown sort {sort!r}: use one of {', '.join(SORTS)}")
        asked = describe(terms)
        parts, terms = words.split_terms(terms) if mode != "vector" else ([], terms)
        words.check_mode(mode, parts, terms)
        if not self._indexes:  # the first search: is there anything to search?
            self.encoders.require_vectors()
        started = time.perf_counter()
        text_only = all(t.image is None and t.file_id is None for t in terms)
        reader = self.encoders.text_reader(model)
        encoder = reader if text_only else self.encoders.for_query(model)
        row = self.encoders.model_row(encoder)
        try:
            vector = self.query_vector(terms, encoder, reader)
        except ImageError as e:
            raise UnusableImage(e) from None
        if self.log_queries and any(t.text is not None for t in terms):
            self.store.query_log.add(encoder.digest, vector)
        embedded = time.perf_counter()
        loaded, action = self.index_for(row.id)
        pool = k + offset + 1 if sort == "score" else DATE_POOL  # one more: is there more?
        want = min(pool, max(1, loaded.count))  # no more than there are, whatever is asked
        exclude = self._self_ids(terms) if exclude_self else []
        allowed = filtered_ids(self.catalog, row.id, filters) if filters else None  # for both
        hits = []
        if mode != "text":
            hits = nearest(self.catalog, loaded, vector, want, filters, exclude, allowed)
        found = self._by_words(parts, row.id, vector, pool, allowed, exclude)
        hits = self._fused(hits, found, min_score)
        searched = time.perf_counter()
        if sort == "score":
            results = hydrate(self.catalog, hits[offset:], None)
        else:
            results = by_date(hydrate(self.catalog, hits, None), newest=sort == "-date")
            results = results[offset:]
        self._say_why(results, parts, found)
        timings = {
            "embed": (embedded - started) * 1000,
            "search": (searched - embedded) * 1000,
            "hydrate": (time.perf_counter() - searched) * 1000,
        }
        return Answer(asked, encoder.name, results[:k], action, timings, len(results) > k)

    def _by_words(
        self,
        parts: Sequence[Part],
        model_id: int,
        vector: np.ndarray,
        pool: int,
        allowed: np.ndarray | None,
        exclude: Sequence[int],
    ) -> dict[int, float]:
        """The files the query's words find, best first, with their vector scores: those
        with this model's vector that pass the filters (`allowed`: their ids)."""
        if not parts:
            return {}
        ids = self.catalog.words.search(parts, WORD_POOL)
        if allowed is not None:
            passing = set(allowed.tolist())
            ids = [i for i in ids if i in passing]
        skip = set(exclude)
        have, vecs = self.catalog.vectors.get(model_id, [i for i in ids if i not in skip])
        scores = dict(zip(have.tolist(), (vecs @ vector).tolist())) if len(have) else {}
        kept = [i for i in ids if i in scores][:pool]
        return {i: scores[i] for i in kept}

    @staticmethod
    def _fused(
        hits: list[tuple[int, float]], found: dict[int, float], min_score: float | None
    ) -> list[tuple[int, float]]:
        """Vector hits and word hits as one ranking; min_score holds for vector-only hits."""
        scores = dict(hits) | found
        order = words.fuse([i for i, _ in hits], list(found)) if found else [i for i, _ in hits]
        return [
            (i, scores[i])
            for i in order
            if i in found or min_score is None or scores[i] >= min_score
        ]

    def _say_why(self, results: list[Result], parts: Sequence[Part], found: dict) -> None:
        """Each result found by words says which words, by field."""
        mine = [r.file_id for r in results if r.file_id in found]
        held = self.catalog.words.of(mine) if mine else {}
        for r in results:
            if r.file_id in held:
                r.matched = words.matched(parts, held[r.file_id])

    def query_vector(
        self, terms: Sequence[Term], encoder: Encoder, reader: Encoder | None = None
    ) -> np.ndarray:
        """The query's vector: its images through `encoder`, its words through `reader`
        (a text tower, where one reads for the model; else the encoder itself)."""
        vectors = []
        for t in terms:
            if t.file_id is not None:
                vectors.append(self._stored_vector(t.file_id, encoder))
            elif t.image is not None:
                vectors.append(self._image_vector(t.image, encoder))
            else:
                vectors.append(self._text_vector(t.text, reader or encoder))
        return combine(np.stack(vectors), [t.weight for t in terms])

    def _text_vector(self, text: str, encoder: Encoder) -> np.ndarray:
        key = (encoder.text_key, text)
        if key in self._text_vectors:
            self._text_vectors.move_to_end(key)
        else:
            self._text_vectors[key] = encoder.encode_text([text])[0]
            if len(self._text_vectors) > TEXT_CACHE_SIZE:
                self._text_vectors.popitem(last=False)
        return self._text_vectors[key]

    def _stored_vector(self, file_id: int, encoder: Encoder) -> np.ndarray:
        ids, vecs = self.catalog.vectors.get(self.encoders.model_row(encoder).id, [file_id])
        if not len(ids):
            raise UnknownFile(f"no indexed image #{file_id} for model {encoder.name}")
        return vecs[0]

    def _image_vector(self, image: str | BytesSource, encoder: Encoder) -> np.ndarray:
        """An indexed image's stored vector, or a fresh embedding of an outside image."""
        if isinstance(image, BytesSource):
            return encoder.encode_images([image])[0]
        path = os.path.abspath(image)
        model = self.catalog.models.find(encoder.digest)
        row = self.catalog.files.under([path]).get(path)
        if model is not None and row is not None and row.state == "ok":
            st = os.stat(path)
            if (st.st_size, st.st_mtime_ns) == (row.size, row.mtime_ns):
                ids, vecs = self.catalog.vectors.get(model.id, [row.id])
                if len(ids):
                    return vecs[0]
        return encoder.encode_images([image])[0]

    def _self_ids(self, terms: Sequence[Term]) -> list[int]:
        paths = [os.path.abspath(t.image) for t in terms if isinstance(t.image, str)]
        rows = self.catalog.files.under(paths)
        return [rows[p].id for p in paths if p in rows] + [
            t.file_id for t in terms if t.file_id is not None
        ]
