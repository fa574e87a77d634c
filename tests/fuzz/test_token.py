"""Fuzz POST /oauth2/token: every grant type, bad codes, verifiers, refresh
tokens, and client authentication in Basic and in the form."""

from __future__ import annotations

import typing as t

from hypothesis import given
from hypothesis import strategies as st

from .properties import Fuzzer
from .strategies import form_body
from .strategies import mutated_pairs
from .strategies import odd_basic
from .strategies import odd_bytes
from .strategies import odd_content_type
from .strategies import odd_method
from .strategies import odd_text
from .strategies import opaque
from .world import World

GRANT_TYPES = [
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "password",
    "implicit",
    "urn:ietf:params:oauth:grant-type:device_code",
    "urn:ietf:params:oauth:grant-type:token-exchange",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "",
    "AUTHORIZATION_CODE",
]


def _code_form(data: st.DataObject, world: World) -> dict[str, str]:
    flow = world.code_flow
    return {
        "grant_type": "authorization_code",
        "code": opaque(data, flow.code),
        "code_verifier": data.draw(st.one_of(st.just(flow.verifier), odd_text)),
        "redirect_uri": flow.redirect_uri,
        "client_id": world.public_id,
        "resource": "http://127.0.0.1:9999/mcp",
    }


def _refresh_form(data: st.DataObject, world: World) -> dict[str, str]:
    confidential = data.draw(st.booleans())
    token = world.confidential_refresh_token if confidential else world.refresh_token
    return {
        "grant_type": "refresh_token",
        "refresh_token": opaque(data, token),
        "client_id": world.confidential_id if confidential else world.public_id,
        "scope": data.draw(st.sampled_from(["mcp", "mcp mcp:write", "openid", ""])),
    }


@given(data=st.data())
def test_token_requests(fuzzer: Fuzzer, world: World, data: st.DataObject) -> None:
    form = data.draw(st.sampled_from([_code_form, _refresh_form]))(data, world)
    if data.draw(st.integers(0, 3)) == 0:
        form["grant_type"] = data.draw(
            st.one_of(st.sampled_from(GRANT_TYPES), odd_text)
        )
    extra = ("client_secret", "client_assertion", "client_assertion_type", "scope")
    pairs = data.draw(mutated_pairs(form, extra))
    headers = _client_auth(data, world, pairs)
    response = fuzzer.send(
        "POST",
        "/oauth2/token",
        data=data.draw(form_body(pairs)),
        content_type="application/x-www-form-urlencoded",
        headers=headers,
    )
    _follow(world, response)


def _client_auth(
    data: st.DataObject, world: World, pairs: list[tuple[str, str]]
) -> dict[str, str]:
    """Basic for the confidential client, a form secret, both, or none."""
    how = data.draw(st.sampled_from(["none", "basic", "post", "both"]))
    headers: dict[str, str] = {}
    if how in ("basic", "both"):
        client_id = world.confidential_id
        header = odd_basic(client_id, world.confidential_secret)
        headers["Authorization"] = data.draw(header)
    if how in ("post", "both"):
        pairs.append(("client_secret", world.confidential_secret))
    return headers


def _follow(world: World, response: t.Any) -> None:
    """A refresh that succeeded rotated the token: fuzz the new one next."""
    if response.status_code != 200:
        return
    body = response.get_json()
    if body.get("refresh_token"):
        if body["refresh_token"].split(".")[0] == world.refresh_token.split(".")[0]:
            world.refresh_token = body["refresh_token"]
        else:
            world.confidential_refresh_token = body["refresh_token"]


@given(method=odd_method, content_type=odd_content_type, body=odd_bytes)
def test_token_bodies(
    fuzzer: Fuzzer, method: str, content_type: str | None, body: bytes
) -> None:
    kwargs: dict[str, t.Any] = {"data": body}
    if content_type is not None:
        kwargs["content_type"] = content_type
    query = "?client_id=x" if len(body) % 2 else ""
    fuzzer.send(method, "/oauth2/token" + query, **kwargs)
