"""The key: with `--api-key`, every API, thumbnail and image request must carry it in the
X-API-Key header, or carry the session cookie the page gets by trading the key once.

The cookie holds a random session token, never the key, so a stolen cookie dies with a
sign-out or a restart. Wrong keys are slowed down and, past a few a minute from one
address, refused for a while: the key cannot be guessed at network speed.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import threading
import time
from collections import defaultdict, deque

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .schemas import SessionRequest, SessionState
from .service import API, HttpError

COOKIE = "clipsearch_session"
SESSION_DAYS = 30
FAILURES_ALLOWED = 5  # wrong keys from one address per WINDOW_S before it must wait
WINDOW_S = 60.0

router = APIRouter()


class Keys:
    """The server's key, the sessions it has opened, and the wrong keys it has seen."""

    def __init__(self, api_key: str | None):
        self.api_key = api_key
        self.sessions: dict[str, float] = {}  # token -> when it expires (time.monotonic)
        self.failures: dict[str, deque[float]] = defaultdict(deque)
        self.lock = threading.Lock()

    def matches(self, key: str) -> bool:
        return hmac.compare_digest(key.encode(), (self.api_key or "").encode())

    def open_session(self) -> str:
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.sessions[token] = time.monotonic() + SESSION_DAYS * 86400
        return token

    def close_session(self, token: str | None) -> None:
        with self.lock:
            self.sessions.pop(token or "", None)

    def in_session(self, token: str | None) -> bool:
        with self.lock:
            return self.sessions.get(token or "", 0.0) > time.monotonic()

    def recent_failures(self, client: str) -> int:
        with self.lock:
            seen = self.failures[client]
            while seen and seen[0] < time.monotonic() - WINDOW_S:
                seen.popleft()
            if not seen:
                del self.failures[client]  # an address is remembered a minute, no longer
            return len(seen)

    def check_not_throttled(self, client: str) -> None:
        if self.recent_failures(client) >= FAILURES_ALLOWED:
            raise HttpError(429, f"too many wrong keys; wait {WINDOW_S:.0f} s and try again")

    async def failed(self, client: str) -> None:
        """Count a wrong key and answer it slowly (a fifth of a second more per recent failure)."""
        with self.lock:
            self.failures[client].append(time.monotonic())
        await asyncio.sleep(min(self.recent_failures(client), FAILURES_ALLOWED) * 0.2)


def keys_of(request: Request) -> Keys:
    return request.app.state.keys


def client_of(request: Request) -> str:
    return request.client.host if request.client else "?"


async def check(request: Request) -> None:
    """Raise 401 (or 429) unless the request may reach the endpoint it asks for: the
    dependency of every router but the page's and this one."""
    keys = keys_of(request)
    if not keys.api_key:
        return
    if keys.in_session(request.cookies.get(COOKIE)):
        return
    given = request.headers.get("x-api-key")
    if given is not None:
        keys.check_not_throttled(client_of(request))
        if keys.matches(given):
            return
        await keys.failed(client_of(request))
    raise HttpError(401, "a valid API key is needed")


@router.get(f"{API}/session", response_model=SessionState)
def session_state(request: Request) -> SessionState:
    """Whether this server needs a key, and whether this browser has a session."""
    keys = keys_of(request)
    return SessionState(
        key_needed=bool(keys.api_key), signed_in=keys.in_session(request.cookies.get(COOKIE))
    )


@router.post(f"{API}/session", response_model=SessionState)
async def sign_in(body: SessionRequest, request: Request) -> Response:
    """Trade the key for an HttpOnly session cookie, so that the page's image loads carry
    it."""
    keys = keys_of(request)
    keys.check_not_throttled(client_of(request))
    if keys.api_key and not keys.matches(body.key):
        await keys.failed(client_of(request))
        raise HttpError(401, "wrong key")
    response = JSONResponse({"key_needed": bool(keys.api_key), "signed_in": True})
    response.set_cookie(
        COOKIE,
        keys.open_session(),
        max_age=SESSION_DAYS * 86400,
        httponly=True,
        samesite="strict",
        path="/",
    )
    return response


@router.delete(f"{API}/session", response_model=SessionState)
def sign_out(request: Request) -> Response:
    """End this browser's session: its cookie no longer opens anything."""
    keys = keys_of(request)
    keys.close_session(request.cookies.get(COOKIE))
    response = JSONResponse({"key_needed": bool(keys.api_key), "signed_in": False})
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
