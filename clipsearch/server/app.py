"""The FastAPI application: the Guard in front, the routers by area (the page, the key, the
JSON API, the images), the static files of the page, and every error as JSON with one
line (a real 500 is also logged, with its traceback, by uvicorn)."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import api, auth, files, reference
from .guard import Exposure, Guard
from .service import HttpError, Redirect, Service, status_for

WEB = resources.files("clipsearch.server") / "web"


def create_app(service: Service, exposure: Exposure = Exposure()) -> FastAPI:
    app = FastAPI(
        title="clipsearch",
        version="1",
        description="Semantic image search over a clipsearch store. Files are served by "
        "catalog id only. With a key, send it in the X-API-Key header.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.service, app.state.keys = service, auth.Keys(exposure.api_key)
    handle_errors(app)

    app.add_middleware(Guard, exposure=exposure)
    app.add_api_route("/", page, response_class=HTMLResponse, include_in_schema=False)
    app.add_api_route(
        "/duplicates", duplicates_page, response_class=HTMLResponse, include_in_schema=False
    )
    app.add_api_route("/health", health)
    app.mount("/static", StaticFiles(directory=str(WEB)), name="static")
    for area in (auth, api, files, reference):
        app.include_router(area.router)
    reference.document(app, keyed=bool(exposure.api_key))
    return app


def page() -> str:
    return (WEB / "index.html").read_text(encoding="utf-8")


def duplicates_page() -> str:
    return (WEB / "duplicates.html").read_text(encoding="utf-8")


def health() -> dict:
    return {"status": "ok"}


def error_response(e: Exception) -> Response:
    """`{"error": one line}` with its status."""
    if isinstance(e, Redirect):
        return RedirectResponse(e.url, status_code=e.status)
    status, message = status_for(e)
    return JSONResponse({"error": message}, status_code=status)


def handle_errors(app: FastAPI) -> None:
    """Every error as `{"error": one line}` with its status."""

    @app.exception_handler(HttpError)
    async def http_error(request: Request, e: HttpError) -> Response:
        return error_response(e)

    @app.exception_handler(StarletteHTTPException)
    async def starlette_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code)

    @app.exception_handler(Exception)  # Starlette re-raises it after: uvicorn logs it
    async def anything_else(request: Request, e: Exception) -> Response:
        return error_response(e)

    @app.exception_handler(RequestValidationError)
    @app.exception_handler(ValidationError)
    async def invalid(request: Request, e: ValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc'] if x != 'body')}: {err['msg']}"
            for err in e.errors()
        )
        return JSONResponse({"error": f"bad request: {problems}"}, status_code=400)
