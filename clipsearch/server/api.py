"""The JSON API under /api/v1: search (words, uploaded images, an indexed image), similar
images, vectors, and the store's status."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from .body import read_body
from .schemas import EmbedRequest, SearchRequest, SearchResponse, search_body
from .service import API, service_of

router = APIRouter(prefix=API)


@router.post("/search", response_model=SearchResponse, openapi_extra=search_body())
async def search(request: Request) -> SearchResponse:
    """Search by text, by uploaded image(s) (multipart: `image` parts and a `request`
    part holding the JSON fields), by an indexed image (`similar_to`), or a mix."""
    fields, uploads = await read_body(request)
    req = SearchRequest.model_validate(fields)
    return await run_in_threadpool(service_of(request).search, req, uploads)


@router.get("/similar/{file_id}", response_model=SearchResponse)
def similar(file_id: int, request: Request, k: int = 20, offset: int = 0) -> SearchResponse:
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
