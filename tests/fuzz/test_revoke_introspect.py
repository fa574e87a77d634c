"""Fuzz POST /oauth2/revoke and POST /oauth2/introspect with real and mutated
tokens (opaque refresh tokens and JWT access tokens) and odd client auth."""

from __future__ import annotations

import typing as t

from hypothesis import given
from hypothesis import strategies as st

from .conftest import INTROSPECTOR_ID
from .conftest import INTROSPECTOR_SECRET
from .properties import Fuzzer
from .strategies import b64url
from .strategies import form_body
from .strategies import mutated_jwt
from .strategies import mutated_pairs
from .strategies import odd_basic
from .strategies import odd_text
from .strategies import opaque
from .world import World

HINTS = ["access_token", "refresh_token", "id_token", "", "ACCESS_TOKEN"]


def _token(data: st.DataObject, world: World, jwks: dict[str, t.Any]) -> str:
    """A mutated token of the world's: never the untouched one (that revokes)."""
    kind = data.draw(st.sampled_from(["access", "refresh", "text"]))
    if kind == "access":
        return data.draw(mutated_jwt(world.confidential_access_token, jwks))
    if kind == "refresh":
        return opaque(data, world.confidential_refresh_token, keep=False)
    return data.draw(odd_text)


@given(data=st.data())
def test_revoke(fuzzer: Fuzzer, world: World, data: st.DataObject) -> None:
    jwks = fuzzer.client.get("/.well-known/jwks.json").get_json()
    form = {"token": _token(data, world, jwks), "token_type_hint": "refresh_token"}
    pairs = data.draw(mutated_pairs(form, ("client_id", "client_secret")))
    pairs = [
        (
            n,
            data.draw(st.sampled_from(HINTS))
            if n == "token_type_hint" and data.draw(st.booleans())
            else v,
        )
        for n, v in pairs
    ]
    header = odd_basic(world.confidential_id, world.confidential_secret)
    fuzzer.send(
        "POST",
        "/oauth2/revoke",
        data=data.draw(form_body(pairs)),
        content_type="application/x-www-form-urlencoded",
        headers={"Authorization": data.draw(header)},
    )


@given(data=st.data())
def test_introspect(fuzzer: Fuzzer, world: World, data: st.DataObject) -> None:
    jwks = fuzzer.client.get("/.well-known/jwks.json").get_json()
    which = data.draw(st.sampled_from(["access", "refresh", "mutated"]))
    token = {"access": world.access_token, "refresh": world.refresh_token}.get(which)
    if token is None:
        token = _token(data, world, jwks)
    pairs = data.draw(mutated_pairs({"token": token}, ("client_id", "client_secret")))
    headers = {}
    if data.draw(st.booleans()):
        headers["Authorization"] = data.draw(
            odd_basic(INTROSPECTOR_ID, INTROSPECTOR_SECRET)
        )
    else:
        pairs += [
            ("client_id", INTROSPECTOR_ID),
            ("client_secret", INTROSPECTOR_SECRET),
        ]
    response = fuzzer.send(
        "POST",
        "/oauth2/introspect",
        data=data.draw(form_body(pairs)),
        content_type="application/x-www-form-urlencoded",
        headers=headers,
    )
    if response.status_code == 200:
        assert isinstance(response.get_json()["active"], bool)


@given(data=st.data(), path=st.sampled_from(["/oauth2/introspect", "/oauth2/revoke"]))
def test_tokens_on_a_fresh_store(
    fuzzer: Fuzzer, data: st.DataObject, path: str
) -> None:
    """No client registered and no key generated yet: still nothing written."""
    header = data.draw(st.sampled_from(['{"alg":"ES256","kid":"k"}', '{"alg":"none"}']))
    token = ".".join([b64url(header.encode()), b64url(b"{}"), data.draw(odd_text)])
    token = data.draw(st.one_of(st.just(token), odd_text))
    pairs = [
        ("token", token),
        ("client_id", INTROSPECTOR_ID),
        ("client_secret", INTROSPECTOR_SECRET),
    ]
    fuzzer.send(
        "POST",
        path,
        data=data.draw(form_body(pairs)),
        content_type="application/x-www-form-urlencoded",
    )
