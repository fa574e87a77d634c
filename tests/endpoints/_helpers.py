"""Assertions and small builders shared by the endpoint tests (no fixtures)."""

from __future__ import annotations

import base64
import socket
import typing as t
from urllib.parse import parse_qs
from urllib.parse import quote_plus
from urllib.parse import urlsplit

from joserfc import jwt
from joserfc.jwk import KeySet

ISSUER = "http://127.0.0.1:9999"
RESOURCE = ISSUER + "/mcp"


def assert_no_store(response: t.Any) -> None:
    assert response.headers.get("Cache-Control") == "no-store"


def assert_json_error(response: t.Any, status: int, error: str) -> dict[str, t.Any]:
    """A JSON OAuth error with no Location, as RFC 6749 §5.2 shapes it."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    assert "Location" not in response.headers
    body = t.cast(dict[str, t.Any], response.get_json())
    assert body["error"] == error
    return body


def assert_page(response: t.Any, status: int = 400) -> None:
    """An error shown to the user: the status, and never a redirect."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert "Location" not in response.headers


def redirect_params(response: t.Any, status: int = 302) -> dict[str, list[str]]:
    """The query of a redirect's Location (every value, to count repeats)."""
    assert response.status_code == status, response.get_data(as_text=True)
    return parse_qs(urlsplit(response.headers["Location"]).query)


def location_base(response: t.Any) -> str:
    parts = urlsplit(response.headers["Location"])
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def basic(client_id: str, secret: str) -> dict[str, str]:
    """OAuth 2.1 §2.4.1: form-urlencode each part, then base64 the pair."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def decode_access_token(client: t.Any, token: str) -> t.Any:
    """Verify a token against the served JWKS, as any MCP server would."""
    jwks = client.get("/.well-known/jwks.json").get_json()
    return jwt.decode(token, KeySet.import_key_set(jwks))


class ShiftedClock:
    """Stands in for the `time` module of one proxy module, `offset` s ahead."""

    def __init__(self, offset: float) -> None:
        import time

        self._time = time
        self.offset = offset

    def time(self) -> float:
        return self._time.time() + self.offset

    def monotonic(self) -> float:
        return self._time.monotonic() + self.offset

    def sleep(self, seconds: float) -> None:
        self._time.sleep(seconds)


def resource_status(client: t.Any, access_token: str) -> int:
    """What the resource side says of a token (forward-auth shares the gateway's
    check: signature, audience, expiry, and that the grant is still alive)."""
    response = client.get(
        "/oauth2/forward-auth", headers={"Authorization": f"Bearer {access_token}"}
    )
    return int(response.status_code)
