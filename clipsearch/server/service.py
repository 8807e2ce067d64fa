"""What the endpoints share: the warm Library, and the rule that turns any error into an
HTTP status and one line, never a traceback.

Searches and embeddings hold a lock (the Library and its models serve one at a time);
files never wait, and a thumbnail waits only for another request making the same one.
Files are served by catalog id only, and only while each is the regular image file the
catalog recorded (same size and modification time, not a symbolic link).
"""

from __future__ import annotations

import io
import json
import os
import stat
import threading
import warnings
from pathlib import Path

from fastapi import Request
from PIL import Image

from ..core import faults
from ..core.errors import ClipsearchError, TruncationWarning
from ..core.files import write_atomic
from ..images import items
from ..images.decode import BytesSource, ImageError, item_source, open_image
from ..images.formats import is_image_name
from ..library import Library
from ..query.duplicates import Duplicates
from ..query.search import Filters, QueryError, Term, parse_query, split_query
from ..query.searcher import UnknownFile, UnusableImage
from ..storage.database import CatalogError, CatalogMissing, State
from ..storage.schema import File
from ..watching.watcher import Watcher
from .schemas import (
    DuplicateGroup,
    DuplicatesResponse,
    Item,
    SearchRequest,
    SearchResponse,
    TextLineItem,
    TextResponse,
)

API = "/api/v1"  # where the JSON API lives


def service_of(request: Request) -> Service:
    """The app's Service, for an endpoint."""
    return request.app.state.service


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Redirect(HttpError):
    """An image that a list file named by its http(s) URL: the browser is sent there, and
    the server never fetches a URL on a request's behalf."""

    def __init__(self, url: str):
        super().__init__(302, url)
        self.url = url


def status_for(e: Exception) -> tuple[int, str]:
    """The HTTP status and message for an error: never a traceback."""
    if isinstance(e, HttpError):
        return e.status, str(e)
    if isinstance(e, UnknownFile):
        return 404, str(e)
    if isinstance(e, (ImageError, UnusableImage)):
        return (413 if "decompression bomb" in e.reason else 422), str(e)
    if isinstance(e, CatalogMissing):
        return 404, str(e)
    if isinstance(e, CatalogError) or type(e).__module__.startswith("sqlalchemy"):
        return 503, "the store cannot be read just now (being upgraded?); try again shortly"
    if isinstance(e, (QueryError, ClipsearchError)):
        return 400, str(e)
    return 500, f"internal error ({type(e).__name__}); the server log says no more"


class Service:
    """The warm Library behind the endpoints."""

    def __init__(self, library: Library, model: str | None = None, watcher: Watcher | None = None):
        self.library = library
        self.model = model
        self.watcher = watcher  # `serve --watch`: the page tells what it is doing
        self.lock = threading.Lock()
        self.thumbs = library.store.path / "thumbs"
        self.making = [threading.Lock() for _ in range(64)]  # by thumbnail, hashed
        self.grouped: tuple[tuple, Duplicates] | None = None  # the last duplicates asked for

    def watching(self) -> dict:
        """`{"watching": false}` without --watch; else what the watcher is doing."""
        return self.watcher.state.to_dict() if self.watcher else {"watching": False}

    def warm_up(self) -> None:
        """Load the text tower and the vector index now, not at the first request."""
        if self.library.catalog.state is State.CURRENT and any(
            n for _, n in self.library.catalog.models.counted()
        ):
            for _ in range(2):  # the second settles the text tower's precision
                self.search(SearchRequest(query="a photo"))

    def search(self, req: SearchRequest, uploads: list[BytesSource] = ()) -> SearchResponse:
        terms = []
        if req.query or uploads:  # words from the network are never read as file paths
            terms = parse_query(split_query(req.query), uploads, paths=False)
        if req.similar_to is not None:
            terms.append(Term(1.0, file_id=req.similar_to))
        if not terms:
            raise QueryError("empty query: give some words, an image, or similar_to")
        faults.hit("serve-search", req.query)
        with self.lock, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TruncationWarning)
            answer = self.library.search_terms(
                terms,
                k=req.k,
                model=self.model,
                filters=Filters.parse(
                    req.in_, req.after, req.before, req.ext, req.camera, req.near
                ),
                min_score=req.min_score,
                exclude_self=req.similar_to is not None,
                offset=req.offset,
                sort=req.sort,
                mode=req.mode,
            )
        timings = {k: round(v, 2) for k, v in answer.timings_ms.items()}
        return SearchResponse(
            items=[Item.of(r) for r in answer.results],
            more=answer.more,
            query=answer.query,
            model=answer.model,
            timings_ms=timings,
            warnings=[str(w.message) for w in caught if w.category is TruncationWarning],
        )

    def text(self, file_id: int) -> TextResponse:
        row = self.library.catalog.files.rows([file_id]).get(file_id)
        if row is None or row.state != "ok":
            raise UnknownFile(f"no indexed image #{file_id}")
        lines = [
            TextLineItem(text=line.text, confidence=line.confidence, box=json.loads(line.box))
            for line in self.library.catalog.words.lines(file_id)
        ]
        return TextResponse(id=file_id, read=row.text_read is not None, lines=lines)

    def duplicates(
        self, kind: str, threshold: float | None, filters: Filters, offset: int, limit: int
    ) -> DuplicatesResponse:
        """A page of groups (the first call for a model measures its thresholds, which
        loads it: under the lock the models are used under). The groups are kept while the
        catalog is as it was, so that paging through them does not find them again."""
        with self.lock:
            asked = (kind, threshold, filters, self._catalog_now())
            if self.grouped is None or self.grouped[0] != asked:
                found = self.library.duplicates(kind, (), filters, threshold, self.model)
                self.grouped = (asked, found)
            found = self.grouped[1]
        page = found.groups[offset : offset + limit]
        return DuplicatesResponse(
            kind=found.kind,
            model=found.model,
            threshold=found.threshold,
            groups=[DuplicateGroup.of(g) for g in page],
            total=len(found.groups),
            more=offset + limit < len(found.groups),
        )

    def _catalog_now(self) -> tuple:
        """What changes whenever a file or a vector does: the vector log's position of
        every model, and the count of files by state."""
        catalog = self.library.catalog
        if catalog.state is not State.CURRENT:
            return ()
        positions = [catalog.vectors.log_position(m.id) for m, _ in catalog.models.counted()]
        return (tuple(positions), tuple(sorted(catalog.files.counts().items())))

    def embed(self, texts: list[str], uploads: list[BytesSource]) -> dict:
        with self.lock, warnings.catch_warnings():  # the server keeps no warnings
            warnings.simplefilter("ignore", TruncationWarning)
            encoder = (
                self.library.query_encoder(self.model)
                if uploads
                else self.library.text_reader(self.model)
            )
            vectors = encoder.encode_images(uploads) if uploads else encoder.encode_text(texts)
        return {
            "model": encoder.name,
            "digest": encoder.digest,
            "dim": encoder.dim,
            "vectors": [[round(float(x), 7) for x in v] for v in vectors],
        }

    def servable(self, file_id: int) -> File:
        """The catalog's file, if it is still the regular image file it recorded."""
        row = self.library.catalog.files.rows([file_id]).get(file_id)
        if row is None or row.state != "ok":
            raise HttpError(404, f"no indexed image #{file_id}")
        if items.is_url(row.path):
            if row.path.lower().startswith(("http://", "https://")):
                raise Redirect(row.path)
            raise HttpError(404, f"image #{file_id} is not on this machine: it is a URL")
        try:
            held = items.source_stat(row.path)
            plain = items.is_plain_file(row.path)
            regular = stat.S_ISREG(os.lstat(row.path).st_mode) if plain else True
        except OSError:
            raise HttpError(404, f"image #{file_id} is no longer on disk") from None
        if not (held == (row.size, row.mtime_ns) and is_image_name(row.path) and regular):
            raise HttpError(404, f"image #{file_id} changed on disk; index it again")
        return row

    def thumbnail(self, file_id: int, size: int) -> tuple[Path | bytes, str]:
        """A JPEG of the image fitted in size x size, made once and kept in the store; on a
        store that cannot be written, made for each request (the bytes, not a path)."""
        row = self.servable(file_id)
        tag = f"{file_id}-{size}-{row.mtime_ns}"
        path = self.thumbs / f"{tag}.jpg"
        with self.making[hash(tag) % len(self.making)]:
            if path.exists():
                return path, tag
            img, _ = open_image(item_source(row.path), draft_size=size)  # EXIF applied
            img.thumbnail((size, size), Image.Resampling.BICUBIC)
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=85)
            try:
                self.thumbs.mkdir(mode=0o700, exist_ok=True)
                write_atomic(path, buf.getvalue())
            except OSError:  # a read-only store, a full disk: serve it all the same
                return buf.getvalue(), tag
        return path, tag
