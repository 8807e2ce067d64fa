"""The API's reference at /docs: a page of the server's own (no script from a CDN, so it
works offline and under the Content-Security-Policy) that reads /openapi.json; and the
schema itself made to say what the server does: errors are 400 with one line, and the
key goes in X-API-Key."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse

from .schemas import ErrorResponse

router = APIRouter(include_in_schema=False)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>clipsearch API</title><link rel="stylesheet" href="/static/style.css"></head>
<body class="reference"><main><h1>clipsearch API</h1>
<p>The machine-readable schema is at <a href="/openapi.json">/openapi.json</a>.</p>
<div id="operations" aria-busy="true"></div></main>
<script src="/static/reference.js"></script></body></html>
"""


@router.get("/docs", response_class=HTMLResponse)
def docs() -> str:
    return PAGE


@router.get("/redoc")
def redoc() -> RedirectResponse:
    return RedirectResponse("/docs")


def document(app: FastAPI, keyed: bool) -> None:
    """Make app.openapi() give the schema as served: 400 with ErrorResponse where FastAPI
    would say 422, and the key's scheme where there is a key."""
    plain = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = plain()
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        schemas["ErrorResponse"] = ErrorResponse.model_json_schema()
        error = {
            "description": "Bad request: one line that says what is wrong",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
            },
        }
        for operation in (op for path in schema["paths"].values() for op in path.values()):
            operation["responses"].pop("422", None)
            operation["responses"]["400"] = error
        if keyed:
            components["securitySchemes"] = {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
            }
            schema["security"] = [{"apiKey": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi
