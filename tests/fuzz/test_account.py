"""Fuzz /account: revoke forms, session cookies and the sign-in's callback.

Alice is signed in on the fuzzer's browser with a valid CSRF token; the form
names Bob's grant. No mutation of it may end Bob's grant (or anything else:
every refusal leaves Redis as it was), and no cookie but the real one shows
the page.
"""

from __future__ import annotations

import typing as t
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.config.settings import Settings
from tests.endpoints.test_account import ALICE
from tests.endpoints.test_account import BOB
from tests.endpoints.test_account import grant_id_of
from tests.endpoints.test_account import seal
from tests.endpoints.test_account import with_session
from tests.oauth_client import OAuthTestClient

from .properties import Fuzzer
from .strategies import form_body
from .strategies import mutated_pairs
from .strategies import odd_text
from .world import World


@pytest.fixture
def bobs_grant(oauth: OAuthTestClient, world: World) -> str:
    _, tokens = oauth.tokens(BOB)
    return grant_id_of(tokens)


@given(data=st.data())
def test_revoke_form_never_ends_another_users_grant(
    fuzzer: Fuzzer,
    fuzz_settings: Settings,
    bobs_grant: str,
    app: t.Any,
    data: st.DataObject,
) -> None:
    csrf = with_session(fuzzer.client, fuzz_settings, ALICE)
    form = {"grant_id": bobs_grant, "csrf_token": csrf}
    pairs = data.draw(mutated_pairs(form))
    response = fuzzer.send(
        "POST",
        "/account/revoke",
        data=data.draw(form_body(pairs)),
        content_type="application/x-www-form-urlencoded",
        headers={"Accept": "text/html"},
    )
    assert response.status_code in (400, 403, 404, 413), response.status_code
    assert app.extensions["proxy"].store.grant_exists(bobs_grant)


@given(data=st.data())
def test_only_the_real_session_cookie_shows_the_page(
    fuzzer: Fuzzer, fuzz_settings: Settings, app: t.Any, data: st.DataObject
) -> None:
    real, _ = seal(fuzz_settings, ALICE)
    index = data.draw(st.integers(0, len(real) - 1))
    char = data.draw(st.sampled_from("AZaz09-_.=~!"))
    value = data.draw(
        st.one_of(
            odd_text,
            st.just(real[:index] + char + real[index + 1 :]),
            st.just(real[:index]),
            st.just(real + real),
        )
    )
    cookieless = Fuzzer(
        app.test_client(use_cookies=False), fuzzer.redis, fuzz_settings.key_prefix
    )
    response = cookieless.send(
        "GET", "/account", headers={"Cookie": f"mcp_account={value}"}
    )
    if value == real:
        assert response.status_code == 200
    else:
        assert response.status_code == 302, response.status_code


@given(data=st.data())
def test_account_sign_in_callback(
    fuzzer: Fuzzer, world: World, app: t.Any, data: st.DataObject
) -> None:
    start = fuzzer.client.get("/account", headers={"Accept": "text/html"})
    assert start.status_code == 302
    state = parse_qs(urlsplit(start.headers["Location"]).query)["state"][0]
    valid = {"state": state, "code": "x" + data.draw(odd_text)}
    pairs = data.draw(mutated_pairs(valid, ("error", "error_description", "iss")))
    body = data.draw(form_body(pairs)).decode("latin-1")
    response = fuzzer.send("GET", "/oauth2/callback?" + body)
    assert response.status_code != 200
    assert fuzzer.client.get_cookie("mcp_account", path="/account") is None
