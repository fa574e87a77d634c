"""Fuzz discovery and metadata: RFC 8414 / OIDC discovery, JWKS, RFC 9728 PRM,
and the health checks, with odd path suffixes, methods and headers."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from hypothesis import given
from hypothesis import strategies as st

from .properties import Fuzzer
from .strategies import header_safe
from .strategies import odd_method
from .strategies import odd_text
from .strategies import odd_url

BASES = [
    "/.well-known/oauth-authorization-server",
    "/.well-known/openid-configuration",
    "/.well-known/oauth-protected-resource",
    "/.well-known/jwks.json",
    "/healthz",
    "/readyz",
    "/",
    "/mcp",
]


@st.composite
def odd_path(draw: st.DrawFn) -> str:
    base = draw(st.sampled_from(BASES))
    suffix = draw(
        st.one_of(
            st.just(""),
            odd_text,
            st.sampled_from(
                [
                    "/mcp",
                    "/mcp/",
                    "//mcp",
                    "/%2e%2e/mcp",
                    "/..",
                    "/%ff",
                    "/\\mcp",
                    "?x=%ff",
                    "/mcp?resource=x",
                    "/" + "a/" * 500,
                    "%00",
                    "/\u202e",
                ]
            ),
        )
    )
    path = base + suffix
    # What a raw HTTP request line can carry: the server sees it percent-decoded.
    return "".join(c if 0x20 < ord(c) < 0x7F else f"%{ord(c) & 0xFF:02X}" for c in path)


@given(
    method=odd_method,
    path=odd_path(),
    origin=st.one_of(st.none(), odd_url.filter(header_safe)),
)
def test_discovery(fuzzer: Fuzzer, method: str, path: str, origin: str | None) -> None:
    headers = {"Origin": origin} if origin else {}
    # As a server would hand it over (WSGI: percent-decoded, latin-1), also
    # for targets the test client would read as a URL ("//host/...").
    target, _, query = path.partition("?")
    environ = {
        "PATH_INFO": unquote_to_bytes(target).decode("latin-1"),
        "QUERY_STRING": query,
    }
    response = fuzzer.send(
        method, target.split("/")[0] or "/", headers=headers, environ_overrides=environ
    )
    if response.status_code == 200 and method == "GET" and "jwks" in path:
        assert all("d" not in key for key in response.get_json()["keys"])
