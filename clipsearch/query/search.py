"""Queries: text, images and weighted combinations, with exact filtered search.

A query vector is the weighted sum of its terms' unit embeddings, re-normalised
("beach" + "sunset" - "people"). Filters (folder, capture date, extension) are resolved in
SQL to a set of file ids; search then runs over exactly that set, through a FAISS ID
selector or, for small sets, exactly over the catalog's vectors: never top-k-then-filter.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import numpy as np

from ..core.errors import ClipsearchError
from ..images.decode import BytesSource
from ..images.formats import is_image_name, raw_beside
from ..storage.catalog import Catalog
from ..storage.exact import exact_topk
from ..storage.loaded_index import LoadedIndex

EXACT_SUBSET_LIMIT = 20_000  # filtered sets up to this size are searched exactly
_WEIGHTED = re.compile(r"^(-?\d+(?:\.\d+)?):(.+)$", re.DOTALL)


class QueryError(ClipsearchError, ValueError):
    """A query that cannot be answered as asked; the message says why."""


@dataclass(frozen=True)
class Term:
    """One weighted part of a query: text, an image (a path, or bytes sent), or an indexed
    image by its catalog id."""

    weight: float
    text: str | None = None
    image: str | BytesSource | None = None
    file_id: int | None = None

    def describe(self) -> str:
        if self.file_id is not None:
            what = f"image #{self.file_id}"
        elif isinstance(self.image, BytesSource):
            what = f"uploaded image {self.image.path}"
        else:
            what = f"image {self.image}" if self.image else repr(self.text)
        sign = "-" if self.weight < 0 else "+"
        w = abs(self.weight)
        return f"{sign} {'' if w == 1 else f'{w:g}×'}{what}"


def looks_like_image(arg: str) -> bool:
    return is_image_name(arg) and os.path.isfile(arg)


_OPERATOR = re.compile(r"\s+([+-])\s+")


def split_query(text: str) -> list[str]:
    """One string as the command line would have it in words: `beach + sunset - 2:people`
    -> ["beach", "+", "sunset", "-", "2:people"]; operators stand between spaces, so
    "a well-lit room" stays one term."""
    return [part for part in _OPERATOR.split(f" {text} ") if part.strip()]


def parse_query(
    args: Sequence[str], images: Sequence[str | BytesSource] = (), paths: bool = True
) -> list[Term]:
    """Words and operators as typed: `beach + sunset - people`, `2:beach`, `photo.jpg`.
    A standalone + or - sets the sign of the next term; an existing image file is an image
    (with paths=True: never for a query that came over the network)."""
    terms: list[Term] = []
    sign = 1.0
    for raw in args:
        arg = raw.strip()
        if arg in ("+", "-"):
            sign = -1.0 if arg == "-" else 1.0
            continue
        if not arg:
            continue
        weight = 1.0
        if m := _WEIGHTED.match(arg):
            weight, arg = float(m.group(1)), m.group(2).strip()
        if paths and looks_like_image(arg):
            terms.append(Term(sign * weight, image=arg))
        else:
            terms.append(Term(sign * weight, text=arg))
        sign = 1.0
    terms += [Term(1.0, image=p if isinstance(p, BytesSource) else str(p)) for p in images]
    if not terms:
        raise QueryError("empty query: give some words, an image file, or both")
    return terms


def describe(terms: Sequence[Term]) -> str:
    text = " ".join(t.describe() for t in terms)
    return text[2:] if text.startswith("+ ") else text


def combine(vectors: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """Weighted sum of unit vectors, re-normalised."""
    q = (np.asarray(weights, np.float32)[:, None] * vectors).sum(axis=0)
    norm = float(np.linalg.norm(q))
    if norm < 1e-6:
        raise QueryError("the query terms cancel out; nothing is left to search for")
    return (q / norm).astype(np.float32)


@dataclass(frozen=True)
class Filters:
    folders: Sequence[str] = ()
    after: datetime | None = None
    before: datetime | None = None
    extensions: Sequence[str] = ()
    camera: str | None = None  # in the camera's make and model, any case
    near: tuple[float, float, float] | None = None  # latitude, longitude, km

    def __bool__(self) -> bool:
        return bool(
            self.folders or self.after or self.before or self.extensions or self.camera or self.near
        )

    @classmethod
    def parse(
        cls,
        folders: Sequence[str] = (),
        after: str | None = None,
        before: str | None = None,
        extensions: Sequence[str] = (),
        camera: str | None = None,
        near: str | None = None,
    ) -> Filters:
        """Filters as a person gives them: dates as YYYY[-MM[-DD]] or ISO 8601, a camera
        as part of its make and model ("canon", "eos r5", "Canon EOS"), a place as
        LAT,LON[,KM] in degrees (km: 10 unless given)."""
        for ext in extensions:
            if not ext.isprintable():
                raise QueryError(f"not a file format: {ext!r} (give one such as jpg)")
        if camera is not None and not (camera.strip() and camera.isprintable()):
            raise QueryError(f"not a camera: {camera!r} (give part of its name, such as canon)")
        return cls(
            folders=[str(f) for f in folders],
            after=parse_date(after) if after else None,
            before=parse_date(before) if before else None,
            extensions=list(extensions),
            camera=" ".join(camera.lower().split()) if camera else None,
            near=parse_place(near) if near is not None else None,
        )


NEAR_KM = 10.0  # --near's radius unless given


def parse_place(text: str) -> tuple[float, float, float]:
    """LAT,LON[,KM]: degrees north and east (negative: south, west), and a radius."""
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) == 2:
        parts.append(NEAR_KM)
    if len(parts) != 3 or not all(math.isfinite(x) for x in parts):
        raise QueryError(
            f"not a place: {text!r} (give LAT,LON or LAT,LON,KM in degrees, e.g. 48.858,2.294,5)"
        )
    lat, lon, km = parts
    if not (-90 <= lat <= 90 and -180 <= lon <= 180 and 0 < km <= 20_100):
        raise QueryError(
            f"not a place: {text!r} (latitude -90..90, longitude -180..180, km above 0)"
        )
    return lat, lon, km


def parse_date(text: str) -> datetime:
    """YYYY, YYYY-MM, YYYY-MM-DD or a full ISO timestamp."""
    for fmt in ("%Y", "%Y-%m", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise QueryError(
            f"not a date: {text!r} (use YYYY, YYYY-MM, YYYY-MM-DD or ISO 8601)"
        ) from None
    try:
        return when.astimezone(timezone.utc).replace(tzinfo=None) if when.tzinfo else when
    except OverflowError:
        raise QueryError(f"date out of range: {text!r} (years 1 to 9999, in UTC)") from None


def _ext_aliases(ext: str) -> set[str]:
    e = "." + ext.lower().lstrip(".")
    groups = [{".jpg", ".jpeg", ".jpe"}, {".tif", ".tiff"}, {".heic", ".heif"}]
    return next((g for g in groups if e in g), {e})


def filtered_ids(catalog: Catalog, model_id: int, filters: Filters) -> np.ndarray:
    """Ids of files with this model's vector that pass every filter. An extension is
    matched literally (`%` is a character, not a wildcard)."""
    extensions = set().union(*(_ext_aliases(e) for e in filters.extensions))
    return catalog.files.matching(
        model_id,
        folders=[os.path.abspath(f) for f in filters.folders],
        extensions=sorted(extensions),
        after=filters.after,
        before=filters.before,
        camera=filters.camera,
        near=filters.near,
    )


@dataclass
class Result:
    path: str
    score: float
    file_id: int
    size: int
    width: int | None
    height: int | None
    format: str | None
    taken_at: datetime | None
    modified: datetime
    camera: str | None
    lens: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    raw: str | None = None  # the RAW file beside a JPEG: one photo, shot RAW+JPEG
    matched: dict[str, list[str]] | None = None  # the query's words it holds, by field

    @property
    def date(self) -> datetime:
        return self.taken_at or self.modified

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("taken_at", "modified"):
            d[key] = d[key].isoformat() if d[key] else None
        d["date"] = self.date.isoformat()
        return d


def nearest(
    catalog: Catalog,
    loaded: LoadedIndex,
    query: np.ndarray,
    k: int,
    filters: Filters = Filters(),
    exclude: Sequence[int] = (),
    allowed: np.ndarray | None = None,
) -> list[tuple[int, float]]:
    """The k best (file id, score) for a unit query vector, exact over a small filtered
    set, and exact whenever the index returns fewer than there are (an HNSW graph asked for
    a k near its size misses some). `allowed`: the filters' ids, where already known."""
    q = query.reshape(1, -1).astype(np.float32)
    want = k + len(exclude)
    if allowed is None and filters:
        allowed = filtered_ids(catalog, loaded.model_id, filters)
    if allowed is not None and len(allowed) <= EXACT_SUBSET_LIMIT:
        ids, vecs = catalog.vectors.get(loaded.model_id, allowed.tolist())
        scores, found = exact_topk(q, ids, vecs, want)
    else:
        scores, found = loaded.search(q, want * loaded.rerank, allowed)
        if loaded.rerank > 1:
            scores, found = _rerank(catalog, loaded.model_id, q, found[0], want)
        expected = min(want, loaded.count if allowed is None else len(allowed))
        if int((found[0] >= 0).sum()) < expected:  # a graph asked for most of its nodes
            subset = None if allowed is None else allowed.tolist()
            ids, vecs = catalog.vectors.get(loaded.model_id, subset)
            scores, found = exact_topk(q, ids, vecs, want)
    skip = set(exclude)
    hits = [(int(i), float(s)) for i, s in zip(found[0], scores[0]) if i >= 0 and i not in skip]
    return hits[:k]


def _rerank(catalog: Catalog, model_id: int, q: np.ndarray, candidates: np.ndarray, k: int):
    """Exact scores for compressed-index candidates, from the catalog's full vectors."""
    ids, vecs = catalog.vectors.get(model_id, [int(i) for i in candidates if i >= 0])
    return exact_topk(q, ids, vecs, k)


def utc(ns: int) -> datetime:
    """File times in UTC, as the date filters compare them."""
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).replace(tzinfo=None)


def hydrate(
    catalog: Catalog, hits: Sequence[tuple[int, float]], min_score: float | None
) -> list[Result]:
    """(file id, score) hits as Results, with what the catalog knows of each file."""
    rows = catalog.files.rows([fid for fid, _ in hits])
    out = []
    for fid, score in hits:
        row = rows.get(fid)
        if row is None or (min_score is not None and score < min_score):
            continue
        camera = " ".join(x for x in (row.camera_make, row.camera_model) if x) or None
        out.append(
            Result(
                path=row.path,
                score=score,
                file_id=fid,
                size=row.size,
                width=row.width,
                height=row.height,
                format=row.format,
                taken_at=row.taken_at,
                modified=utc(row.mtime_ns),
                camera=camera,
                lens=row.lens,
                latitude=row.latitude,
                longitude=row.longitude,
                raw=raw_beside(row.path),
            )
        )
    return out
