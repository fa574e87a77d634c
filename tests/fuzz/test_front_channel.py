"""Fuzz the browser leg: GET/POST /oauth2/authorize, POST /oauth2/consent,
GET /oauth2/callback, each from a real request with parameters mutated."""

from __future__ import annotations

import typing as t
from urllib.parse import parse_qsl
from urllib.parse import urlsplit

from hypothesis import given
from hypothesis import strategies as st

from proxy.oauth.pkce import s256

from .properties import Fuzzer
from .strategies import encode_pairs
from .strategies import form_body
from .strategies import mutated_pairs
from .strategies import odd_method
from .strategies import odd_text
from .world import World

_AUTHORIZE_EXTRA = (
    "resource",
    "prompt",
    "nonce",
    "request",
    "request_uri",
    "response_mode",
    "code_challenge_method",
)


#: Error pages or JSON: the choice follows Accept (web/error_handlers.py).
_ACCEPTS = [
    "text/html",
    "application/json",
    "text/html;q=abc, application/json",
    "*/*;q=-1",
    "application/json;q=0.0000001, text/html;q=0",
    "text/*, application/*;level=1;q=0.5",
    ",,,;;;",
]


def _authorize_params(world: World) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": world.public_id,
        "redirect_uri": world.redirect_uri,
        "code_challenge": s256("v" * 43),
        "code_challenge_method": "S256",
        "scope": "mcp",
        "state": "client-state",
        "resource": "http://127.0.0.1:9999/mcp",
    }


@given(data=st.data(), post=st.booleans())
def test_authorize(
    fuzzer: Fuzzer, world: World, data: st.DataObject, post: bool
) -> None:
    pairs = data.draw(mutated_pairs(_authorize_params(world), _AUTHORIZE_EXTRA))
    body = data.draw(form_body(pairs))
    headers = {"Accept": data.draw(st.one_of(st.sampled_from(_ACCEPTS), odd_text))}
    if post:
        fuzzer.send(
            "POST",
            "/oauth2/authorize",
            data=body,
            content_type="application/x-www-form-urlencoded",
            headers=headers,
        )
    else:
        query = body.decode("latin-1")
        fuzzer.send("GET", "/oauth2/authorize?" + query, headers=headers)


@given(data=st.data())
def test_consent(fuzzer: Fuzzer, world: World, data: st.DataObject) -> None:
    action = data.draw(st.sampled_from(["approve", "deny", "Approve", ""]))
    form = {**world.consent_form, "action": action}
    pairs = data.draw(mutated_pairs(form, ("action",)))
    if data.draw(st.booleans()):
        pairs = [(n, _tamper(data, v) if n == "request" else v) for n, v in pairs]
    fuzzer.send(
        "POST",
        "/oauth2/consent",
        data=data.draw(form_body(pairs)),
        content_type="application/x-www-form-urlencoded",
    )


def _tamper(data: st.DataObject, value: str) -> str:
    """One character of a signed blob changed, or the blob cut short."""
    if not value:
        return data.draw(odd_text)
    index = data.draw(st.integers(0, len(value) - 1))
    char = data.draw(st.sampled_from("AZaz09-_.=~!"))
    return data.draw(
        st.sampled_from(
            [value[:index] + char + value[index + 1 :], value[:index], value + value]
        )
    )


@given(data=st.data())
def test_callback(fuzzer: Fuzzer, world: World, data: st.DataObject) -> None:
    valid = dict(parse_qsl(urlsplit(world.callback_url).query))
    # Never the untouched state and code together: that is a real login.
    valid["code"] = "x" + valid.get("code", "")
    pairs = data.draw(
        mutated_pairs(valid, ("error", "error_description", "iss", "session_state"))
    )
    query = data.draw(form_body(pairs)).decode("latin-1")
    fuzzer.send("GET", "/oauth2/callback?" + query)


@given(
    method=odd_method,
    path=st.sampled_from(["/oauth2/authorize", "/oauth2/consent", "/oauth2/callback"]),
)
def test_front_channel_methods(
    fuzzer: Fuzzer, world: World, method: str, path: str
) -> None:
    fuzzer.send(method, path + "?client_id=" + world.public_id, data=b"a=b")


@given(data=st.data())
def test_browser_cookies(
    fuzzer: Fuzzer, world: World, app: t.Any, data: st.DataObject
) -> None:
    """Valid consent forms and callbacks from a browser with an odd cookie."""
    stored = fuzzer.client.get_cookie("mcp_browser")
    assert stored is not None
    real = stored.value
    cookie = data.draw(
        st.one_of(
            odd_text.map(lambda v: f"mcp_browser={v}"),
            odd_text.map(lambda v: f"mcp_browser={real}; mcp_consent={v}"),
            st.sampled_from(
                [
                    f"mcp_browser={real}; mcp_browser=x" + "y" * 30,
                    f'mcp_browser="{real}"',
                    f"mcp_browser={real[:-1]}",
                    f"mcp_browser={real}\\355\\240\\200",
                    'mcp_browser="\\355\\240\\200' + "a" * 30 + '"',
                    "mcp_browser=\xe9\xff" + "a" * 30,
                    "=; ;=;mcp_browser",
                ]
            ),
        )
    )
    cookieless = Fuzzer(app.test_client(use_cookies=False), fuzzer.redis, world.prefix)
    headers = {"Cookie": cookie}
    which = data.draw(st.sampled_from(["consent", "callback", "authorize"]))
    if which == "consent":
        form = {
            **world.consent_form,
            "action": data.draw(st.sampled_from(["approve", "deny"])),
        }
        cookieless.send(
            "POST",
            "/oauth2/consent",
            data=form,
            headers=headers,
        )
    elif which == "callback":
        parts = urlsplit(world.callback_url)
        cookieless.send("GET", f"{parts.path}?{parts.query}", headers=headers)
    else:
        query = encode_pairs(list(_authorize_params(world).items())).decode()
        cookieless.send("GET", "/oauth2/authorize?" + query, headers=headers)
