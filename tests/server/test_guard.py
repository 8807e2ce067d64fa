"""What every request passes before an endpoint, over real HTTP against a real server:
the Host it names (DNS rebinding), where it comes from (cross-site requests), how big its
body is however it is sent, and the headers every answer carries."""

from __future__ import annotations

import select
import socket
import time
from urllib.parse import urlparse

import httpx
import pytest
from helpers import serving

from clipsearch.server.body import MAX_IMAGES, MAX_JSON, MAX_MULTIPART

PATHS = ["/", "/api/v1/status", "/thumb/1", "/image/1", "/docs"]


def get(base: str, path: str, **headers) -> httpx.Response:
    return httpx.get(f"{base}{path}", headers=headers, timeout=30)


@pytest.mark.parametrize("path", PATHS)
def test_a_name_rebound_to_loopback_is_refused(base, path):
    port = urlparse(base).port
    assert get(base, path, host=f"evil.example:{port}").status_code == 421
    assert get(base, path, host="evil.example").status_code == 421
    for known in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "localhost"):
        assert get(base, path, host=known).status_code in (200, 404)  # 404: id 1 may be gone


def test_allowed_host_adds_a_name(photos):
    with serving(photos / "store", names=("photos.lan",)) as url:
        assert get(url, "/api/v1/status", host="photos.lan:8765").status_code == 200
        assert get(url, "/api/v1/status", host="other.lan").status_code == 421


def test_every_answer_carries_the_security_headers(base):
    for response in (get(base, "/"), get(base, "/api/v1/status"), get(base, "/nothing")):
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self';" in csp
        assert "unsafe-inline" not in csp


def test_the_page_and_the_reference_need_nothing_from_elsewhere(base):
    for path in ("/", "/docs"):
        html = get(base, path).text
        assert "<script>" not in html and "cdn" not in html.lower() and "https://" not in html
    assert get(base, "/redoc").status_code in (200, 307)
    assert get(base, "/static/reference.js").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://evil.example"},
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
    ],
)
def test_cross_site_requests_are_refused(base, headers):
    for path, body in (("/api/v1/search", {"query": "x"}), ("/api/v1/session", {"key": "k"})):
        response = httpx.post(f"{base}{path}", json=body, headers=headers)
        assert response.status_code == 403 and "cross-site" in response.json()["error"]


def test_the_page_s_own_requests_pass(base):
    same = {"origin": base, "sec-fetch-site": "same-origin"}
    response = httpx.post(f"{base}/api/v1/search", json={"query": "x", "k": 1}, headers=same)
    assert response.status_code == 200
    proxied = {"origin": base.replace("http://", "https://")}  # TLS ended by a proxy
    response = httpx.post(f"{base}/api/v1/search", json={"query": "x", "k": 1}, headers=proxied)
    assert response.status_code == 200


@pytest.mark.parametrize(
    "kind", ["text/plain", "application/x-www-form-urlencoded", "", "application/javascript"]
)
def test_a_simple_request_s_body_is_not_read_as_json(base, kind):
    response = httpx.post(
        f"{base}/api/v1/search", content=b'{"query": "x"}', headers={"content-type": kind}
    )
    assert response.status_code == 415


def chunked_post(base: str, content_type: str, first: bytes, total: int) -> tuple[int, int]:
    """POST `total` bytes to /api/v1/search as a chunked body, no Content-Length: (the
    status the server answered, the bytes it had been sent by then)."""
    url = urlparse(base)
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    head = (
        f"POST /api/v1/search HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    sock.sendall(head.encode())
    sock.sendall(b"%x\r\n%s\r\n" % (len(first), first))
    chunk, sent = b"1," * 2**19, len(first)
    sock.settimeout(5)
    try:
        while sent < total and not select.select([sock], [], [], 0)[0]:  # till it answers
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass
    sock.settimeout(30)
    answer = sock.recv(65536).decode("latin-1")
    sock.close()
    return int(answer.split()[1]), sent


IMAGE_PART = (
    b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
    b"Content-Type: image/png\r\n\r\n"
)


@pytest.mark.parametrize(
    ("kind", "first", "limit"),
    [
        ("application/json", b"[", MAX_JSON),
        ("multipart/form-data; boundary=x", IMAGE_PART, MAX_MULTIPART),
    ],
    ids=["json", "multipart"],
)
def test_a_chunked_body_is_counted_as_it_streams(base, kind, first, limit):
    status, sent = chunked_post(base, kind, first, total=300 * 2**20)
    assert status == 413 and sent < limit + 8 * 2**20  # what the sockets' buffers held
    assert get(base, "/health").status_code == 200  # and it answers the next request


def test_a_declared_length_over_the_limit_is_refused_before_it_is_read(base):
    url = urlparse(base)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(
            f"POST /api/v1/search HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: "
            f"application/json\r\nContent-Length: {MAX_JSON + 1}\r\n\r\n{{}}".encode()
        )
        assert sock.recv(65536).split()[1] == b"413"


def test_queries_parts_and_fields_are_capped(base):
    assert httpx.post(f"{base}/api/v1/search", json={"query": "x" * 5000}).status_code == 400
    assert (
        httpx.post(f"{base}/api/v1/search", json={"query": "x", "ext": ["a"] * 100}).status_code
        == 400
    )
    images = [("image", (f"{i}.png", b"x", "image/png")) for i in range(MAX_IMAGES + 1)]
    response = httpx.post(f"{base}/api/v1/search", files=images, data={"request": "{}"})
    assert response.status_code == 400 and "files" in response.json()["error"]
    fields = {f"f{i}": "x" for i in range(10)}
    response = httpx.post(f"{base}/api/v1/search", files=images[:1], data=fields)
    assert response.status_code == 400 and "fields" in response.json()["error"]


def test_a_client_that_sends_its_headers_slowly_is_cut_off(base, monkeypatch):
    from clipsearch.server import listener

    url = urlparse(base)
    sock = socket.create_connection((url.hostname, url.port), timeout=60)
    started = time.monotonic()
    sock.sendall(b"GET /health HTTP/1.1\r\n")
    try:
        while time.monotonic() - started < 30:
            sock.sendall(b"X-Slow: 1\r\n")
            time.sleep(1)
        closed = False
    except (BrokenPipeError, ConnectionResetError):
        closed = True
    assert closed and time.monotonic() - started < listener.HEADER_TIMEOUT_S + 5
