"""The FastAPI application: the routers by area (the page, the key, the JSON API, the
images), the static files of the page, and every error as JSON with one line."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import api, auth, files
from .service import HttpError, Redirect, Service, status_for

WEB = resources.files("clipsearch.server") / "web"


def create_app(service: Service, api_key: str | None = None) -> FastAPI:
    app = FastAPI(
        title="clipsearch",
        version="1",
        description="Semantic image search over a clipsearch store. Files are served by "
        "catalog id only. With a key, send it in the X-API-Key header.",
    )
    app.state.service, app.state.api_key = service, api_key
    handle_errors(app)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if not auth.allowed(request, api_key):
            return JSONResponse({"error": "a valid API key is needed"}, status_code=401)
        try:
            return await call_next(request)
        except Exception as e:  # errors raised past the handlers (middleware, streaming)
            status, message = status_for(e)
            return JSONResponse({"error": message}, status_code=status)

    app.add_api_route("/", page, response_class=HTMLResponse, include_in_schema=False)
    app.add_api_route("/health", health)
    app.mount("/static", StaticFiles(directory=str(WEB)), name="static")
    for area in (auth, api, files):
        app.include_router(area.router)
    return app


def page() -> str:
    return (WEB / "index.html").read_text(encoding="utf-8")


def health() -> dict:
    return {"status": "ok"}


def handle_errors(app: FastAPI) -> None:
    """Every error as `{"error": one line}` with its status."""

    @app.exception_handler(HttpError)
    async def http_error(request: Request, e: HttpError) -> Response:
        if isinstance(e, Redirect):
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
