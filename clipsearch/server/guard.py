"""What every request passes before an endpoint, and what every response carries.

A browser on this machine can be made to call the server by any web page it opens: by a
name rebound to 127.0.0.1 (DNS rebinding), or by a cross-site form. So a request must
name the server as the browser knows it (its Host), a request that changes something
must come from the server's own page (its Origin), and a body is counted as it streams,
whatever its headers claim.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

from starlette.datastructures import Headers

from .body import MAX_JSON, MAX_MULTIPART
from .service import HttpError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("", "0.0.0.0", "::")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data: blob: http: https:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


@dataclass(frozen=True)
class Exposure:
    """Who may reach the server: the address it listens on, the names a browser may call
    it by besides loopback's (`--allowed-host`), and the key (`--api-key`)."""

    host: str = "127.0.0.1"
    names: tuple[str, ...] = ()
    api_key: str | None = None

    def knows(self, host_header: str | None) -> bool:
        """Whether a Host header names this server. A client without one is no browser;
        an address literal cannot be rebound, so any is fine on a wildcard listener."""
        if host_header is None:
            return True
        name = host_name(host_header)
        if name in {*LOOPBACK_NAMES, self.host.lower(), *(n.lower() for n in self.names)}:
            return True
        return self.host in WILDCARDS and is_address(name)


def host_name(host_header: str) -> str:
    """`example.org:8765` → `example.org`; `[::1]:8765` → `::1`."""
    value = host_header.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def refusal(exposure: Exposure, scope: dict, headers: Headers) -> HttpError | None:
    """Why the request is refused before any endpoint sees it, or None."""
    if not exposure.knows(headers.get("host")):
        return HttpError(
            421, "unknown Host; start the server with --allowed-host NAME to use that name"
        )
    if scope["method"] in SAFE_METHODS:
        return None
    if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return HttpError(403, "cross-site requests are refused")
    origin = headers.get("origin")  # its host, not its scheme: a TLS proxy may be in front
    if origin is not None and origin.partition("://")[2].lower() != headers.get("host", "").lower():
        return HttpError(403, "cross-site requests are refused")
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
    if has_body and kind not in ("application/json", "multipart/form-data"):
        return HttpError(415, "send the body as application/json (or multipart/form-data)")
    return None


def body_limit(headers: Headers) -> int:
    kind = headers.get("content-type", "").lower()
    return MAX_MULTIPART if kind.startswith("multipart/form-data") else MAX_JSON


class Guard:
    """ASGI middleware: refuse what `refusal` refuses, cap the body as it streams, and add
    the security headers to every response (errors included)."""

    def __init__(self, app, exposure: Exposure):
        self.app = app
        self.exposure = exposure

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
            await send(message)

        headers = Headers(scope=scope)
        problem = refusal(self.exposure, scope, headers)
        limit = body_limit(headers)
        if problem is None and int(headers.get("content-length") or 0) > limit:
            problem = too_large(limit)
        if problem is not None:
            return await answer(problem, send_with_headers)
        await self.app(scope, counted(receive, limit), send_with_headers)


def counted(receive, limit: int):
    """`receive` that raises a 413 once more than `limit` bytes of body have come."""
    seen = 0

    async def receive_counted():
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise too_large(limit)
        return message

    return receive_counted


def too_large(limit: int) -> HttpError:
    return HttpError(413, f"request too large (at most {limit // 1024:,} KB)")


async def answer(problem: HttpError, send) -> None:
    body = json.dumps({"error": str(problem)}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": problem.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
