"""GET /oauth2/callback: the IdP's answer, the binding check, our one-time code."""

from __future__ import annotations

import json
import typing as t
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest

from proxy import create_app
from proxy.upstream.base import UpstreamTokens
from tests.oauth_client import REDIRECT_URI
from tests.oauth_client import Flow
from tests.oauth_client import OAuthTestClient

from ._helpers import ISSUER
from ._helpers import assert_page
from ._helpers import closed_port
from ._helpers import location_base
from ._helpers import redirect_params

HTML = {"Accept": "text/html"}


@pytest.fixture
def client_id(oauth: OAuthTestClient) -> str:
    return str(oauth.register()["client_id"])


def _approved(oauth: OAuthTestClient, client_id: str, **extra: t.Any) -> Flow:
    """Authorize and approve: the browser is about to go to the IdP."""
    flow, _ = oauth.authorize(client_id, **extra)
    assert oauth.consent(flow).status_code == 303
    return flow


def _proxy_state(flow: Flow) -> str:
    return parse_qs(urlsplit(flow.upstream_url).query)["state"][0]


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(query)}"


def test_success_redirects_with_code_client_state_and_iss(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """UP-7, ISS-1: our code, the client's state and iss; never the upstream code."""
    flow = _approved(oauth, client_id, state="orig")
    callback_url = oauth.upstream_login(flow)
    upstream_code = parse_qs(urlsplit(callback_url).query)["code"][0]
    response = oauth.callback(flow)
    query = redirect_params(response)
    assert location_base(response) == REDIRECT_URI
    assert query["state"] == ["orig"]
    assert query["iss"] == [ISSUER]
    assert query["code"] != [upstream_code]
    assert upstream_code not in response.headers["Location"]
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("query", ["", "state=", "code=x", "code=x&state=wrong"])
def test_missing_or_unknown_state_is_an_error_page(
    oauth: OAuthTestClient, client_id: str, query: str
) -> None:
    """UP-2: a missing or unmatched state → 400 page, no code, no redirect."""
    _approved(oauth, client_id)
    response = oauth.client.get("/oauth2/callback?" + query, headers=HTML)
    assert_page(response, 400)
    assert response.mimetype == "text/html"


def test_replayed_callback_is_refused(oauth: OAuthTestClient, client_id: str) -> None:
    """UP-3: the upstream state is single-use; a replayed callback URL → 400."""
    flow = _approved(oauth, client_id)
    oauth.upstream_login(flow)
    assert oauth.callback(flow).status_code == 302
    assert_page(oauth.callback(flow), 400)


def test_callback_without_the_binding_cookie_is_refused(
    oauth: OAuthTestClient, app: t.Any, client_id: str
) -> None:
    """UP-2: the callback in a browser with no binding cookie → 400 page."""
    flow = _approved(oauth, client_id)
    url = urlsplit(oauth.upstream_login(flow))
    response = app.test_client().get(url.path + "?" + url.query)
    assert_page(response, 400)


def test_callback_in_another_browser_is_refused(
    oauth: OAuthTestClient, app: t.Any, client_id: str
) -> None:
    """UP-2: another browser's binding cookie (login CSRF) → 400 page."""
    flow = _approved(oauth, client_id)
    url = urlsplit(oauth.upstream_login(flow))
    other = OAuthTestClient(app.test_client())
    other.authorize(client_id)  # browser B holds its own binding cookie
    response = other.client.get(url.path + "?" + url.query)
    assert_page(response, 400)
    # The refused attempt spent nothing: the rightful browser still finishes.
    assert "code" in redirect_params(oauth.callback(flow))


def test_forged_binding_cookie_is_refused(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """UP-2: a made-up binding cookie value does not match the transaction."""
    flow = _approved(oauth, client_id)
    oauth.upstream_login(flow)
    oauth.client.set_cookie("mcp_browser", "f" * 43)
    assert_page(oauth.callback(flow), 400)


def test_upstream_access_denied_goes_back_to_the_client(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """UP-6: error=access_denied → redirect with access_denied, client state, iss."""
    flow = _approved(oauth, client_id, state="mine")
    response = oauth.callback(
        flow,
        f"{ISSUER}/oauth2/callback?error=access_denied"
        f"&error_description=User+said+no&state={_proxy_state(flow)}",
    )
    query = redirect_params(response)
    assert location_base(response) == REDIRECT_URI
    assert query["error"] == ["access_denied"]
    assert query["state"] == ["mine"]
    assert query["iss"] == [ISSUER]
    assert "code" not in query
    # UP-6: upstream details are not passed on.
    assert "User said no" not in response.headers["Location"]


def test_idp_deny_without_state_is_an_error_page_not_a_500(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """UP-2: the mock IdP's deny redirect drops state: shown, never a 500."""
    flow = _approved(oauth, client_id)
    denied = oauth.idp.post(
        flow.upstream_url, data={"action": "deny"}, allow_redirects=False
    )
    assert denied.status_code == 302
    assert "state=" not in denied.headers["Location"]
    assert_page(oauth.callback(flow, denied.headers["Location"]), 400)


@pytest.mark.parametrize(
    ("upstream_error", "error"),
    [
        ("temporarily_unavailable", "temporarily_unavailable"),
        ("server_error", "server_error"),
        ("login_required", "server_error"),
        ("invalid_request", "server_error"),
    ],
)
def test_other_upstream_errors_become_client_error_redirects(
    oauth: OAuthTestClient, client_id: str, upstream_error: str, error: str
) -> None:
    """UP-6, AUTHZ-14: upstream errors are OAuth redirects, never a 500 page."""
    flow = _approved(oauth, client_id)
    response = oauth.callback(
        flow,
        f"{ISSUER}/oauth2/callback?error={upstream_error}&state={_proxy_state(flow)}",
    )
    query = redirect_params(response)
    assert query["error"] == [error]
    assert query["state"] == ["client-state"]
    assert query["iss"] == [ISSUER]


def test_idp_down_during_code_exchange_is_temporarily_unavailable(
    oauth: OAuthTestClient, app: t.Any, client_id: str, monkeypatch: t.Any
) -> None:
    """AUTHZ-14: the IdP unreachable at the exchange → temporarily_unavailable."""
    flow = _approved(oauth, client_id)
    oauth.upstream_login(flow)
    upstream = app.extensions["proxy"].upstream
    monkeypatch.setitem(
        upstream.metadata(),
        "token_endpoint",
        f"http://127.0.0.1:{closed_port()}/token",
    )
    response = oauth.callback(flow)
    query = redirect_params(response)
    assert query["error"] == ["temporarily_unavailable"]
    assert query["state"] == ["client-state"]
    assert query["iss"] == [ISSUER]
    assert "code" not in query


def test_upstream_code_refused_is_server_error_redirect(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """UP-7: an upstream code the IdP refuses → error redirect, no code."""
    flow = _approved(oauth, client_id)
    url = _with_query(oauth.upstream_login(flow), code="not-a-real-code")
    query = redirect_params(oauth.callback(flow, url))
    assert query["error"] == ["server_error"]
    assert "code" not in query


def test_missing_upstream_code_is_server_error_redirect(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """UP-7: a callback with state but no code mints nothing."""
    flow = _approved(oauth, client_id)
    query = redirect_params(
        oauth.callback(flow, f"{ISSUER}/oauth2/callback?state={_proxy_state(flow)}")
    )
    assert query["error"] == ["server_error"]
    assert "code" not in query


def test_id_token_with_a_wrong_nonce_mints_no_code(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """UP-5: an ID token that fails validation (nonce) → error redirect, no code."""
    flow = _approved(oauth, client_id)
    flow.upstream_url = _with_query(flow.upstream_url, nonce="attacker-nonce")
    oauth.upstream_login(flow)
    query = redirect_params(oauth.callback(flow))
    assert query["error"] == ["server_error"]
    assert query["iss"] == [ISSUER]
    assert "code" not in query


def test_callback_with_a_foreign_iss_is_refused(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """UP-5: RFC 9207 iss naming another IdP (mix-up) → error redirect, no code."""
    flow = _approved(oauth, client_id)
    url = _with_query(oauth.upstream_login(flow), iss="https://evil.example")
    query = redirect_params(oauth.callback(flow, url))
    assert query["error"] == ["server_error"]
    assert "code" not in query


def test_callback_with_the_right_iss_succeeds(
    oauth: OAuthTestClient, client_id: str, idp_url: str
) -> None:
    """UP-5: an iss equal to the upstream issuer is accepted."""
    flow = _approved(oauth, client_id)
    url = _with_query(oauth.upstream_login(flow), iss=idp_url)
    assert "code" in redirect_params(oauth.callback(flow, url))


def test_callback_redirect_target_comes_only_from_the_transaction(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """UP-11: an extra redirect_uri= on the callback is ignored."""
    flow = _approved(oauth, client_id)
    url = _with_query(oauth.upstream_login(flow), redirect_uri="https://evil.example/")
    response = oauth.callback(flow, url)
    assert location_base(response) == REDIRECT_URI


def test_code_lives_at_most_five_minutes(
    oauth: OAuthTestClient, app: t.Any, client_id: str
) -> None:
    """CODE-8: the one-time code's record expires within 5 minutes."""
    flow = oauth.login(client_id)
    store = app.extensions["proxy"].store
    grant_id = flow.code.split(".", 1)[0]
    ttl = store.redis.ttl(store.keys.grant(grant_id))
    assert 0 < ttl <= 300


def _stored_upstream(app: t.Any, flow: t.Any) -> tuple[str, UpstreamTokens]:
    state = app.extensions["proxy"]
    key = state.store.keys.grant(flow.code.split(".", 1)[0])
    raw = state.store.redis.get(key)
    sealed = json.loads(raw)["upstream"]
    return raw, UpstreamTokens.from_dict(
        json.loads(state.keyring.open(sealed, context=key))
    )


def test_upstream_tokens_are_stored_sealed_and_never_handed_out(
    oauth: OAuthTestClient, app: t.Any, client_id: str
) -> None:
    """UP-8, UP-9: only ciphertext in the store; our tokens are not the IdP's.

    Without FORWARD_UPSTREAM_TOKEN the upstream access token is not kept at all.
    """
    flow = oauth.login(client_id)
    body = oauth.token(flow).get_json()
    raw, upstream = _stored_upstream(app, flow)
    assert upstream.access_token == ""
    assert upstream.refresh_token
    assert upstream.refresh_token not in raw
    assert body["refresh_token"] != upstream.refresh_token


def test_forwarded_upstream_access_token_is_stored_sealed(
    settings: t.Any, fake_redis: t.Any
) -> None:
    """UP-9: with forwarding on, the upstream access token is kept, sealed."""
    app = create_app(
        settings.replace(forward_upstream_token=True), redis_client=fake_redis
    )
    oauth = OAuthTestClient(app.test_client())
    client_id = oauth.register()["client_id"]
    flow = oauth.login(client_id)
    body = oauth.token(flow).get_json()
    raw, upstream = _stored_upstream(app, flow)
    assert upstream.access_token
    assert upstream.access_token not in raw
    assert body["access_token"] != upstream.access_token
    assert upstream.access_token not in json.dumps(body)


def test_callback_never_logs_credentials(
    oauth: OAuthTestClient, client_id: str, caplog: t.Any
) -> None:
    """GEN-12: a full flow with logs captured shows no token or secret."""
    caplog.set_level("DEBUG", logger="proxy")
    flow = _approved(oauth, client_id)
    callback_url = oauth.upstream_login(flow)
    oauth.callback(flow)
    body = oauth.token(flow).get_json()
    refreshed = oauth.refresh(client_id, body["refresh_token"]).get_json()
    logged = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith("proxy")
    )
    secrets = [
        parse_qs(urlsplit(callback_url).query)["code"][0],
        flow.code,
        flow.code.split(".", 1)[1],
        body["access_token"],
        body["refresh_token"].split(".", 1)[1],
        refreshed["refresh_token"].split(".", 1)[1],
        "proxy-secret",
        flow.verifier,
    ]
    for secret in secrets:
        assert secret not in logged
