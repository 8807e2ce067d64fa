"""The key over real HTTP: sessions instead of the key in a cookie, sign-out, and wrong
keys slowed down and then refused."""

from __future__ import annotations

import time

import httpx
import pytest
from helpers import serving

from clipsearch.server import auth

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def keyed(photos):
    with serving(photos / "store", api_key=KEY) as url:
        yield url


def sign_in(url: str, key: str = KEY, **kwargs) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/session", json={"key": key}, timeout=30, **kwargs)


def test_the_cookie_holds_a_session_not_the_key(keyed):
    state = httpx.get(f"{keyed}/api/v1/session").json()
    assert state == {"key_needed": True, "signed_in": False}
    login = sign_in(keyed)
    token = login.cookies[auth.COOKIE]
    assert KEY not in login.headers["set-cookie"] and len(token) >= 40
    assert "HttpOnly" in login.headers["set-cookie"] and "Max-Age" in login.headers["set-cookie"]
    assert httpx.get(f"{keyed}/api/v1/status", cookies=login.cookies).status_code == 200
    assert httpx.get(f"{keyed}/api/v1/status", cookies={auth.COOKIE: KEY}).status_code == 401
    other = sign_in(keyed).cookies[auth.COOKIE]
    assert other != token  # each browser its own


def test_sign_out_ends_the_session(keyed):
    login = sign_in(keyed)
    cookies = dict(login.cookies)
    state = httpx.get(f"{keyed}/api/v1/session", cookies=cookies).json()
    assert state["signed_in"]
    out = httpx.delete(f"{keyed}/api/v1/session", cookies=cookies)
    assert out.status_code == 200 and out.json()["signed_in"] is False
    assert f"{auth.COOKIE}=" in out.headers["set-cookie"]  # and the browser forgets it
    assert httpx.get(f"{keyed}/thumb/1", cookies=cookies).status_code == 401


def test_wrong_keys_are_slowed_down_then_refused(photos):
    with serving(photos / "store", api_key=KEY) as url:
        started, statuses = time.monotonic(), []
        for i in range(auth.FAILURES_ALLOWED + 3):
            statuses.append(sign_in(url, key=f"guess{i}").status_code)
        took = time.monotonic() - started
        assert statuses[: auth.FAILURES_ALLOWED] == [401] * auth.FAILURES_ALLOWED
        assert set(statuses[auth.FAILURES_ALLOWED :]) == {429}
        assert took > 0.2 * sum(range(1, auth.FAILURES_ALLOWED + 1))  # each failure slower
        assert sign_in(url).status_code == 429  # even the right key, for a while
        header = httpx.get(f"{url}/api/v1/status", headers={"X-API-Key": KEY})
        assert header.status_code == 429 and "wait" in header.json()["error"]


def test_the_schema_says_how_to_send_the_key(keyed):
    schema = httpx.get(f"{keyed}/openapi.json").json()
    assert schema["components"]["securitySchemes"]["apiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    }
    assert schema["security"] == [{"apiKey": []}]
