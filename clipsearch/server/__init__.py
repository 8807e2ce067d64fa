"""`clipsearch serve`: the Library behind a JSON API and a web page.

A second face of the same Library, as the command line is: this layer parses and checks
requests, the Library answers. One process keeps the text tower, the vector index and the
catalog warm; `clipsearch index` and `forget` stay separate processes whose commits the
Library picks up from the catalog's vector log on the next search. Files are served by
catalog id only: no request parameter is ever a path, and a file is served only while it
is the regular image file the catalog recorded (same size and modification time).
"""

from __future__ import annotations

import hmac
import io
import json
import mimetypes
import os
import threading
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..core.errors import ClipsearchError
from ..core.files import write_atomic
from ..images import items
from ..images.decode import BytesSource, ImageError, open_image
from ..images.formats import is_image_name
from ..images.items import item_source
from ..library import Library
from ..query.search import Filters, QueryError, Result, Term, parse_date, parse_query, split_query
from ..query.searcher import UnknownFile, UnusableImage
from ..storage.database import CatalogError, CatalogMissing, State
from ..storage.schema import File

API = "/api/v1"
MAX_UPLOAD = 20 * 1024 * 1024
COOKIE = "clipsearch_key"
THUMB_SIZES = range(32, 1025)
PROTECTED = (f"{API}/", "/thumb/", "/image/")


class SearchRequest(BaseModel):
    """A query in the command line's language, with the command line's filters."""

    query: str = Field("", description="Words and operators: `beach + sunset - 2:people`.")
    k: int = Field(20, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=100_000, description="Results to skip (paging).")
    min_score: float | None = None
    in_: list[str] = Field([], alias="in", description="Only under these folders.")
    after: str | None = Field(None, description="Taken on or after: YYYY[-MM[-DD]].")
    before: str | None = Field(None, description="Taken before: YYYY[-MM[-DD]].")
    ext: list[str] = Field([], description="Only these formats, e.g. jpg.")
    similar_to: int | None = Field(None, description="Also search by this indexed image.")


class Item(BaseModel):
    id: int
    path: str
    score: float
    width: int | None
    height: int | None
    taken_at: str | None
    date: str
    size: int
    format: str | None
    thumb_url: str
    image_url: str


class SearchResponse(BaseModel):
    items: list[Item]
    query: str
    model: str
    timings_ms: dict[str, float]


class EmbedRequest(BaseModel):
    text: list[str] = Field(..., min_length=1, max_length=256)


class SessionRequest(BaseModel):
    key: str


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Elsewhere(HttpError):
    """An image that a list file named by its http(s) URL: the browser is sent there, and
    the server never fetches a URL on a request's behalf."""

    def __init__(self, url: str):
        super().__init__(302, url)
        self.url = url


def item(r: Result) -> Item:
    return Item(
        id=r.file_id,
        path=r.path,
        score=round(r.score, 5),
        width=r.width,
        height=r.height,
        taken_at=r.taken_at.isoformat() if r.taken_at else None,
        date=r.date.isoformat(),
        size=r.size,
        format=r.format,
        thumb_url=f"/thumb/{r.file_id}",
        image_url=f"/image/{r.file_id}",
    )


def filters_of(req: SearchRequest) -> Filters:
    return Filters(
        folders=req.in_,
        after=parse_date(req.after) if req.after else None,
        before=parse_date(req.before) if req.before else None,
        extensions=req.ext,
    )


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
    """The warm Library and what the endpoints share. Searches and embeddings hold a lock
    (the Library and its models serve one at a time); files and thumbnails never wait."""

    def __init__(self, library: Library, model: str | None = None):
        self.library = library
        self.model = model
        self.lock = threading.Lock()
        self.thumbs = library.store.path / "thumbs"

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
        with self.lock:
            answer = self.library.search_terms(
                terms,
                k=req.k,
                model=self.model,
                filters=filters_of(req),
                min_score=req.min_score,
                exclude_self=req.similar_to is not None,
                offset=req.offset,
            )
        timings = {k: round(v, 2) for k, v in answer.timings_ms.items()}
        return SearchResponse(
            items=[item(r) for r in answer.results],
            query=answer.query,
            model=answer.model,
            timings_ms=timings,
        )

    def embed(self, texts: list[str], uploads: list[BytesSource]) -> dict:
        with self.lock:
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
                raise Elsewhere(row.path)
            raise HttpError(404, f"image #{file_id} is not on this machine: it is a URL")
        try:
            held = items.source_stat(row.path)
        except OSError:
            raise HttpError(404, f"image #{file_id} is no longer on disk") from None
        plain = items.is_plain_file(row.path)
        regular = Path(row.path).is_file() if plain else True
        if not (held == (row.size, row.mtime_ns) and is_image_name(row.path) and regular):
            raise HttpError(404, f"image #{file_id} changed on disk; index it again")
        return row

    def thumbnail(self, file_id: int, size: int) -> tuple[Path, str]:
        """A JPEG of the image fitted in size x size, made once and kept in the store."""
        row = self.servable(file_id)
        tag = f"{file_id}-{size}-{row.mtime_ns}"
        path = self.thumbs / f"{tag}.jpg"
        if not path.exists():
            img, _ = open_image(item_source(row.path), draft_size=size)  # EXIF applied
            img.thumbnail((size, size), Image.Resampling.BICUBIC)
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=85)
            self.thumbs.mkdir(mode=0o700, exist_ok=True)
            write_atomic(path, buf.getvalue())
        return path, tag


def create_app(service: Service, api_key: str | None = None) -> FastAPI:
    app = FastAPI(
        title="clipsearch",
        version="1",
        description="Semantic image search over a clipsearch store. Files are served by "
        "catalog id only. With a key, send it in the X-API-Key header.",
    )
    web = resources.files("clipsearch.server") / "web"

    @app.exception_handler(HttpError)
    async def http_error(request: Request, e: HttpError) -> Response:
        if isinstance(e, Elsewhere):
            return RedirectResponse(e.url, status_code=e.status)
        return JSONResponse({"error": str(e)}, status_code=e.status)

    @app.exception_handler(StarletteHTTPException)
    async def starlette_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code)

    @app.exception_handler(RequestValidationError)
    @app.exception_handler(ValidationError)
    async def invalid(request: Request, e: ValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc'] if x != 'body')}: {err['msg']}"
            for err in e.errors()
        )
        return JSONResponse({"error": f"bad request: {problems}"}, status_code=400)

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        path = request.url.path
        if api_key and path.startswith(PROTECTED) and path != f"{API}/session":
            given = request.headers.get("x-api-key") or request.cookies.get(COOKIE) or ""
            if not hmac.compare_digest(given.encode(), api_key.encode()):
                return JSONResponse({"error": "a valid API key is needed"}, status_code=401)
        try:
            return await call_next(request)
        except Exception as e:  # errors raised past the handlers (middleware, streaming)
            status, message = status_for(e)
            return JSONResponse({"error": message}, status_code=status)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return (web / "index.html").read_text(encoding="utf-8")

    app.mount("/static", StaticFiles(directory=str(web)), name="static")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post(f"{API}/session")
    def session(body: SessionRequest) -> Response:
        """Trade the key for an HttpOnly cookie, so that the page's image loads carry it."""
        if api_key and not hmac.compare_digest(body.key.encode(), api_key.encode()):
            return JSONResponse({"error": "wrong key"}, status_code=401)
        response = JSONResponse({"ok": True})
        response.set_cookie(COOKIE, body.key, httponly=True, samesite="strict", path="/")
        return response

    search_schema = SearchRequest.model_json_schema(by_alias=True)

    @app.post(
        f"{API}/search",
        response_model=SearchResponse,
        openapi_extra={
            "requestBody": {
                "content": {
                    "application/json": {"schema": search_schema},
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "request": {"type": "string", "description": "JSON as above"},
                                "image": {"type": "string", "format": "binary"},
                            },
                        }
                    },
                },
                "required": True,
            }
        },
    )
    async def search(request: Request) -> SearchResponse:
        """Search by text, by uploaded image(s) (multipart: `image` parts and a `request`
        part holding the JSON fields), by an indexed image (`similar_to`), or a mix."""
        fields, uploads = await read_body(request)
        req = SearchRequest.model_validate(fields)
        return await run_in_threadpool(service.search, req, uploads)

    @app.get(f"{API}/similar/{{file_id}}", response_model=SearchResponse)
    def similar(file_id: int, k: int = 20, offset: int = 0) -> SearchResponse:
        return service.search(SearchRequest(similar_to=file_id, k=k, offset=offset))

    @app.post(f"{API}/embed")
    async def embed(request: Request) -> dict:
        """Vectors of texts (JSON `{"text": [...]}`) or of uploaded images (multipart)."""
        fields, uploads = await read_body(request)
        texts = [] if uploads else EmbedRequest.model_validate(fields).text
        return await run_in_threadpool(service.embed, texts, uploads)

    @app.get(f"{API}/status")
    def status() -> dict:
        return service.library.status().to_dict()

    @app.get("/thumb/{file_id}")
    def thumb(file_id: int, request: Request, size: int = 256) -> Response:
        if size not in THUMB_SIZES:
            raise HttpError(400, f"size must be between {THUMB_SIZES[0]} and {THUMB_SIZES[-1]}")
        path, tag = service.thumbnail(file_id, size)
        headers = {"ETag": f'"{tag}"', "Cache-Control": "private, max-age=86400"}
        if request.headers.get("if-none-match") == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        return FileResponse(path, media_type="image/jpeg", headers=headers)

    @app.get("/image/{file_id}")
    def image(file_id: int) -> Response:
        row = service.servable(file_id)
        kind = mimetypes.guess_type(row.path)[0] or "application/octet-stream"
        headers = {"Cache-Control": "private, max-age=3600"}
        if items.is_plain_file(row.path):
            return FileResponse(row.path, media_type=kind, headers=headers)
        return Response(items.read_bytes(row.path), media_type=kind, headers=headers)

    return app


async def read_body(request: Request) -> tuple[dict, list[BytesSource]]:
    """A JSON body, or a multipart one: its `request` part as JSON, its `image` parts as
    uploads, each at most MAX_UPLOAD bytes."""
    kind = request.headers.get("content-type", "")
    if int(request.headers.get("content-length") or 0) > MAX_UPLOAD * 4:
        raise HttpError(413, f"request too large (at most {MAX_UPLOAD // 2**20} MB per image)")
    if not kind.startswith("multipart/form-data"):
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise HttpError(400, "the body must be JSON") from None
        if not isinstance(body, dict):
            raise HttpError(400, "the body must be a JSON object")
        return body, []
    form = await request.form(max_part_size=MAX_UPLOAD)
    try:
        fields = json.loads(form.get("request") or "{}")
    except ValueError:
        raise HttpError(400, "the `request` part must be JSON") from None
    uploads = []
    for part in form.getlist("image"):
        data = await part.read(MAX_UPLOAD + 1)
        if len(data) > MAX_UPLOAD:
            raise HttpError(413, f"{part.filename}: larger than {MAX_UPLOAD // 2**20} MB")
        uploads.append(BytesSource(os.path.basename(part.filename or "upload"), data))
    return (fields if isinstance(fields, dict) else {}), uploads
