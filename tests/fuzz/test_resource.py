"""Fuzz the resource side: the /mcp gateway and GET/POST /oauth2/forward-auth,
with mutated real access tokens, odd schemes, methods, origins and bodies."""

from __future__ import annotations

import typing as t

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy import create_app
from proxy.config.settings import Settings
from support.processes import ManagedProcess

from .properties import Fuzzer
from .strategies import b64url
from .strategies import header_safe
from .strategies import mutated_jwt
from .strategies import odd_bytes
from .strategies import odd_content_type
from .strategies import odd_method
from .strategies import odd_text
from .strategies import odd_url
from .world import World

INITIALIZE = (
    b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":'
    b'"2025-06-18","capabilities":{},"clientInfo":{"name":"fuzz","version":"1"}}}'
)


@pytest.fixture
def app(fuzz_settings: Settings, store_client: t.Any, backend: ManagedProcess) -> t.Any:
    """Gateway mode, in front of the real demo MCP server."""
    return create_app(
        fuzz_settings.replace(backend_url=backend.url), redis_client=store_client
    )


def _authorization(data: st.DataObject, world: World, jwks: dict[str, t.Any]) -> str:
    how = data.draw(st.sampled_from(["mutated", "mutated", "scheme", "text", "valid"]))
    if how == "mutated":
        return "Bearer " + data.draw(mutated_jwt(world.access_token, jwks))
    if how == "scheme":
        scheme = data.draw(
            st.sampled_from(
                ["bearer", "BEARER", "Bearer  ", "DPoP", "Basic", "Bearer\t", ""]
            )
        )
        return f"{scheme} {world.access_token}"
    if how == "text":
        return "Bearer " + data.draw(odd_text)
    return "Bearer " + world.access_token


@given(data=st.data(), path=st.sampled_from(["/mcp", "/oauth2/forward-auth"]))
def test_bearer_tokens(
    fuzzer: Fuzzer, world: World, data: st.DataObject, path: str
) -> None:
    jwks = fuzzer.client.get("/.well-known/jwks.json").get_json()
    headers = {
        "Authorization": _authorization(data, world, jwks),
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-06-18",
    }
    if data.draw(st.booleans()):
        headers["Origin"] = data.draw(
            st.one_of(odd_url.filter(header_safe), st.just("http://localhost:6274"))
        )
    fuzzer.send(
        "POST", path, data=INITIALIZE, content_type="application/json", headers=headers
    )


@given(
    data=st.data(),
    method=odd_method,
    content_type=odd_content_type,
    body=odd_bytes,
    path=st.sampled_from(["/mcp", "/mcp/", "/mcp?x=%ff", "/oauth2/forward-auth"]),
)
def test_requests_with_a_valid_token(
    fuzzer: Fuzzer,
    world: World,
    data: st.DataObject,
    method: str,
    content_type: str | None,
    body: bytes,
    path: str,
) -> None:
    """Past the token check: odd methods, bodies and headers reach the relay."""
    headers = {"Authorization": "Bearer " + world.access_token}
    for name in data.draw(
        st.lists(
            st.sampled_from(
                [
                    "Mcp-Session-Id",
                    "Accept",
                    "Content-Encoding",
                    "Transfer-Encoding",
                    "Connection",
                    "X-Forwarded-For",
                    "Host",
                    "Last-Event-ID",
                    "Origin",
                ]
            ),
            max_size=3,
            unique=True,
        )
    ):
        headers[name] = data.draw(odd_text.filter(header_safe))
    kwargs: dict[str, t.Any] = {"data": body, "headers": headers}
    if content_type is not None:
        kwargs["content_type"] = content_type
    if "form" in (content_type or "") and data.draw(st.booleans()):
        kwargs["data"] = b"access_token=" + world.access_token.encode()
    fuzzer.send(method, path, **kwargs)


@given(token=odd_text, path=st.sampled_from(["/mcp", "/oauth2/forward-auth"]))
def test_bearer_tokens_before_any_key(fuzzer: Fuzzer, token: str, path: str) -> None:
    """A fresh deployment: no token was ever signed, so no key exists yet."""
    header = '{"alg":"ES256","typ":"at+jwt","kid":"k"}'
    jwt_like = ".".join(
        [
            b64url(header.encode()),
            b64url(token.encode("utf-8", "surrogatepass")),
            "c2ln",
        ]
    )
    fuzzer.send("GET", path, headers={"Authorization": "Bearer " + jwt_like})
