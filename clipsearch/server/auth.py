"""The key: with `--api-key`, every API, thumbnail and image request must carry it, in the
X-API-Key header or in the HttpOnly cookie the page gets by trading the key once."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .schemas import SessionRequest
from .service import API

COOKIE = "clipsearch_key"
PROTECTED = (f"{API}/", "/thumb/", "/image/")

router = APIRouter()


def allowed(request: Request, api_key: str | None) -> bool:
    """Whether the request may reach the endpoint it asks for."""
    path = request.url.path
    if not api_key or not path.startswith(PROTECTED) or path == f"{API}/session":
        return True
    given = request.headers.get("x-api-key") or request.cookies.get(COOKIE) or ""
    return hmac.compare_digest(given.encode(), api_key.encode())


@router.post(f"{API}/session")
def session(body: SessionRequest, request: Request) -> Response:
    """Trade the key for an HttpOnly cookie, so that the page's image loads carry it."""
    api_key = request.app.state.api_key
    if api_key and not hmac.compare_digest(body.key.encode(), api_key.encode()):
        return JSONResponse({"error": "wrong key"}, status_code=401)
    response = JSONResponse({"ok": True})
    response.set_cookie(COOKIE, body.key, httponly=True, samesite="strict", path="/")
    return response
