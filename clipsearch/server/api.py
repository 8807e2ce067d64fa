"""The JSON API under /api/v1: search (words, uploaded images, an indexed image), similar
images, vectors, the store's status, and what `serve --watch` is doing."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool

from . import auth
from .body import read_body
from .schemas import MAX_ID, EmbedRequest, SearchRequest, SearchResponse, search_body
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
