"""The JSON API under /api/v1: search (words, uploaded images, an indexed image), similar
images, duplicates, the text read in an image, vectors, the store's status, and what
`serve --watch` is doing."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool

from ..query.search import Filters
from . import auth
from .body import read_body
from .schemas import (
    MAX_ID,
    DuplicatesResponse,
    EmbedRequest,
    SearchRequest,
    SearchResponse,
    Text,
    TextResponse,
    search_body,
)
from .service import API, service_of

router = APIRouter(prefix=API, dependencies=[Depends(auth.check)])


@router.post("/search", response_model=SearchResponse, openapi_extra=search_body())
async def search(request: Request) -> SearchResponse:
    """Search by text, by uploaded image(s) (multipart: `image` parts and a `request`
    part holding the JSON fields), by an indexed image (`similar_to`), or a mix."""
    fields, uploads = await read_body(request)
    req = SearchRequest.model_validate(fields)
    return await run_in_threadpool(service_of(request).search, req, uploads)


@router.get("/similar/{file_id}", response_model=SearchResponse)
def similar(
    request: Request,
    file_id: int = Path(ge=1, le=MAX_ID),
    k: int = Query(20, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=100_000),
) -> SearchResponse:
    return service_of(request).search(SearchRequest(similar_to=file_id, k=k, offset=offset))


@router.get("/duplicates", response_model=DuplicatesResponse)
def duplicates(
    request: Request,
    kind: Literal["exact", "near", "similar"] = "near",
    threshold: float | None = Query(None, ge=-1, le=1, description="Default: measured."),
    in_: list[Text] = Query([], alias="in", max_length=64, description="Only under these."),
    camera: Text | None = Query(None, description="Only photos from this camera (any case)."),
    near: Text | None = Query(None, description="Only photos within KM of LAT,LON[,KM]."),
    offset: int = Query(0, ge=0, le=1_000_000),
    limit: int = Query(100, ge=1, le=1000),
) -> DuplicatesResponse:
    """Groups of duplicate images, the keeper first in each (largest, then oldest): exact
    (the same bytes), near (the same picture re-encoded, resized, cropped, recoloured) or
    similar (the same scene, another shot)."""
    filters = Filters.parse(in_, camera=camera, near=near)
    return service_of(request).duplicates(kind, threshold, filters, offset, limit)


@router.get("/text/{file_id}", response_model=TextResponse)
def text(request: Request, file_id: int = Path(ge=1, le=MAX_ID)) -> TextResponse:
    """The lines of text read in an indexed image (`index --ocr`): each with its
    confidence and its four corners in the picture's own pixels; none where it has no
    text or was not read (`read` says which)."""
    return service_of(request).text(file_id)


@router.post("/embed")
async def embed(request: Request) -> dict:
    """Vectors of texts (JSON `{"text": [...]}`) or of uploaded images (multipart)."""
    fields, uploads = await read_body(request)
    texts = [] if uploads else EmbedRequest.model_validate(fields).text
    return await run_in_threadpool(service_of(request).embed, texts, uploads)


@router.get("/status")
def status(request: Request) -> dict:
    return service_of(request).library.status().to_dict()


@router.get("/watch")
def watch(request: Request) -> dict:
    """With `serve --watch`: whether a run of indexing is going on, how many files it
    has changed since the server started, and when it last changed one (epoch seconds);
    without, `{"watching": false}`."""
    return service_of(request).watching()
