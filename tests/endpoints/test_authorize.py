"""GET /oauth2/authorize: OAuth 2.1 §4.1.1, RFC 7636, RFC 8707, RFC 9207."""

from __future__ import annotations

import typing as t
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest

from proxy.oauth.pkce import s256
from tests.oauth_client import REDIRECT_URI
from tests.oauth_client import OAuthTestClient

from ._helpers import ISSUER
from ._helpers import RESOURCE
from ._helpers import assert_json_error
from ._helpers import assert_page
from ._helpers import decode_access_token
from ._helpers import location_base
from ._helpers import redirect_params

VERIFIER = "v" * 64
HTML = {"Accept": "text/html"}
JSON = {"Accept": "application/json"}


def _params(client_id: str, **overrides: t.Any) -> dict[str, t.Any]:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "code_challenge": s256(VERIFIER),
        "code_challenge_method": "S256",
        "scope": "mcp",
        "state": "S",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def _authorize(client: t.Any, params: t.Any, **headers: str) -> t.Any:
    return client.get("/oauth2/authorize", query_string=params, headers=headers)


@pytest.fixture
def client_id(oauth: OAuthTestClient) -> str:
    return str(oauth.register()["client_id"])


def _is_consent_page(response: t.Any) -> bool:
    return response.status_code == 200 and 'name="csrf_token"' in response.get_data(
        as_text=True
    )


@pytest.mark.parametrize("accept", [HTML, JSON])
def test_unknown_client_is_an_error_page_not_a_redirect(
    client: t.Any, accept: dict[str, str]
) -> None:
    """AUTHZ-1: an unknown client_id → 400, no Location, even with a redirect_uri."""
    response = _authorize(
        client,
        _params("nope", redirect_uri="https://evil.example/cb"),
        **accept,
    )
    assert_page(response, 400)
    if accept is JSON:
        assert_json_error(response, 400, "invalid_client")
    else:
        assert response.mimetype == "text/html"
        assert response.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("client_ids", [[], [""], ["a", "b"]])
def test_missing_or_repeated_client_id_is_an_error_page(
    client: t.Any, client_ids: list[str]
) -> None:
    """AUTHZ-1: a missing client_id is shown, never redirected."""
    params = _params("x")
    params["client_id"] = client_ids
    response = _authorize(client, params, **JSON)
    assert_json_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    "requested",
    [
        "https://a.example/cb/",
        "https://a.example/cb?x=1",
        "https://A.example/cb",
        "https://a.example/x/../cb",
        "https://a.example/c",
        "https://a.example/cb2",
        "http://a.example/cb",
        "https://a.example:443/cb",
        "https://evil.example/cb",
    ],
)
def test_redirect_uri_must_match_exactly(
    client: t.Any, oauth: OAuthTestClient, requested: str
) -> None:
    """AUTHZ-2, AUTHZ-3: simple string comparison; a mismatch is never redirected."""
    client_id = oauth.register(redirect_uris=["https://a.example/cb"])["client_id"]
    response = _authorize(client, _params(client_id, redirect_uri=requested), **HTML)
    assert_page(response, 400)
    assert response.mimetype == "text/html"
    json_response = _authorize(
        client, _params(client_id, redirect_uri=requested), **JSON
    )
    assert_json_error(json_response, 400, "invalid_request")


def test_registered_redirect_uri_proceeds(
    client: t.Any, oauth: OAuthTestClient
) -> None:
    """AUTHZ-2: the exact registered value proceeds to consent."""
    client_id = oauth.register(redirect_uris=["https://a.example/cb"])["client_id"]
    response = _authorize(
        client, _params(client_id, redirect_uri="https://a.example/cb")
    )
    assert _is_consent_page(response)


def test_redirect_uri_may_be_omitted_with_exactly_one_registered(
    client: t.Any, client_id: str
) -> None:
    """AUTHZ-4: with one registered URI, omitting redirect_uri uses it."""
    response = _authorize(client, _params(client_id, redirect_uri=None))
    assert _is_consent_page(response)


def test_redirect_uri_required_with_several_registered(
    client: t.Any, oauth: OAuthTestClient
) -> None:
    """AUTHZ-4: two registered URIs and no redirect_uri → 400 page."""
    client_id = oauth.register(
        redirect_uris=["https://a.example/cb", "https://b.example/cb"]
    )["client_id"]
    response = _authorize(client, _params(client_id, redirect_uri=None), **HTML)
    assert_page(response, 400)


def test_repeated_redirect_uri_is_an_error_page(client: t.Any, client_id: str) -> None:
    """GEN-6, AUTHZ-3: two redirect_uri values cannot be trusted: page, no redirect."""
    params = _params(client_id)
    params["redirect_uri"] = [REDIRECT_URI, REDIRECT_URI]
    assert_page(_authorize(client, params, **HTML), 400)


@pytest.mark.parametrize(
    ("registered", "requested", "proceeds"),
    [
        ("http://127.0.0.1/callback", "http://127.0.0.1:53123/callback", True),
        ("http://127.0.0.1:8000/callback", "http://127.0.0.1:53123/callback", True),
        ("http://[::1]/callback", "http://[::1]:53123/callback", True),
        ("http://localhost/callback", "http://localhost:53123/callback", True),
        ("http://127.0.0.1/callback", "http://127.0.0.1:53123/other", False),
        ("http://127.0.0.1/callback", "http://localhost:53123/callback", False),
        ("http://127.0.0.1/callback", "https://127.0.0.1:53123/callback", False),
        ("http://127.0.0.1/cb?a=1", "http://127.0.0.1:5/cb?a=2", False),
        ("https://a.example/cb", "https://a.example:8443/cb", False),
    ],
)
def test_loopback_redirects_match_with_any_port(
    client: t.Any,
    oauth: OAuthTestClient,
    registered: str,
    requested: str,
    proceeds: bool,
) -> None:
    """AUTHZ-5: loopback port ignored; scheme, host, path and query still exact."""
    client_id = oauth.register(redirect_uris=[registered])["client_id"]
    response = _authorize(client, _params(client_id, redirect_uri=requested), **HTML)
    if proceeds:
        assert _is_consent_page(response)
    else:
        assert_page(response, 400)


def test_loopback_code_goes_to_the_requested_port(
    oauth: OAuthTestClient,
) -> None:
    """AUTHZ-5: the code is delivered to the port the client asked for."""
    client_id = oauth.register(redirect_uris=["http://127.0.0.1/callback"])["client_id"]
    flow = oauth.login(client_id, redirect_uri="http://127.0.0.1:53123/callback")
    assert flow.location.startswith("http://127.0.0.1:53123/callback?")


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"response_type": None}, "invalid_request"),
        ({"response_type": ""}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": "code id_token"}, "unsupported_response_type"),
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": "S512"}, "invalid_request"),
        ({"code_challenge": "tooshort10"}, "invalid_request"),
        ({"code_challenge": "a" * 44}, "invalid_request"),
        ({"code_challenge": "!" * 43}, "invalid_request"),
        ({"resource": "mcp.example.com"}, "invalid_target"),
        ({"resource": "https://other.example/mcp"}, "invalid_target"),
        ({"resource": RESOURCE + "#frag"}, "invalid_target"),
        ({"scope": "mcp\x7f"}, "invalid_scope"),
    ],
)
def test_errors_after_validation_redirect_with_state_and_iss(
    client: t.Any, client_id: str, overrides: dict[str, t.Any], error: str
) -> None:
    """AUTHZ-6, AUTHZ-7, AUTHZ-8, AUTHZ-9, RES-2, RES-3, ISS-1: redirected errors.

    Once client and redirect URI are valid, errors go back with state and iss.
    """
    response = _authorize(client, _params(client_id, **overrides))
    query = redirect_params(response)
    assert location_base(response) == REDIRECT_URI
    assert query["error"] == [error]
    assert query["state"] == ["S"]
    assert query["iss"] == [ISSUER]
    assert "code" not in query
    assert response.headers["Cache-Control"] == "no-store"


def test_plain_pkce_is_refused(client: t.Any, client_id: str) -> None:
    """AUTHZ-8: plain (issue negative list) → invalid_request, no consent page."""
    response = _authorize(
        client,
        _params(client_id, code_challenge=VERIFIER[:43], code_challenge_method="plain"),
    )
    assert redirect_params(response)["error"] == ["invalid_request"]


@pytest.mark.parametrize("name", ["state", "scope", "code_challenge", "response_type"])
def test_repeated_parameter_is_invalid_request(
    client: t.Any, client_id: str, name: str
) -> None:
    """GEN-6: a repeated parameter → 302 error=invalid_request."""
    params = _params(client_id)
    params[name] = [params[name], params[name]]
    query = redirect_params(_authorize(client, params))
    assert query["error"] == ["invalid_request"]
    assert query["iss"] == [ISSUER]


def test_resource_may_repeat(client: t.Any, client_id: str) -> None:
    """GEN-6: resource is the exception, RFC 8707 lets it repeat."""
    response = _authorize(client, _params(client_id, resource=[RESOURCE, RESOURCE]))
    assert _is_consent_page(response)


def test_unknown_parameters_are_ignored(client: t.Any, client_id: str) -> None:
    """GEN-5: foo=bar on a valid request changes nothing."""
    assert _is_consent_page(_authorize(client, _params(client_id, foo="bar")))


def test_empty_state_is_absent(oauth: OAuthTestClient, client_id: str) -> None:
    """GEN-7: state= is treated as absent: the success redirect has no state."""
    flow = oauth.login(client_id, state="")
    query = parse_qs(urlsplit(flow.location).query, keep_blank_values=True)
    assert "state" not in query
    assert query["iss"] == [ISSUER]


def test_empty_state_is_absent_from_error_redirects(
    client: t.Any, client_id: str
) -> None:
    """GEN-7, AUTHZ-10: no state sent → no state returned, even on error."""
    response = _authorize(client, _params(client_id, state="", response_type="token"))
    assert "state" not in redirect_params(response)


def test_empty_scope_gets_the_default(oauth: OAuthTestClient, client_id: str) -> None:
    """GEN-7, SCOPE-4: scope= and no scope both mean the default scope."""
    for scope in ("", None):
        flow = oauth.login(client_id, scope=scope)
        body = oauth.token(flow).get_json()
        assert body["scope"].split() == ["mcp", "mcp:write"]


def test_state_is_echoed_byte_for_byte(oauth: OAuthTestClient, client_id: str) -> None:
    """AUTHZ-10: state=a%20b%2Bc%25 comes back as "a b+c%" on success and error."""
    state = "a b+c%&x=1"
    flow = oauth.login(client_id, state=state)
    assert parse_qs(urlsplit(flow.location).query)["state"] == [state]
    _, error = oauth.authorize(client_id, state=state, response_type="token")
    assert redirect_params(error)["state"] == [state]


def test_registered_query_is_kept(oauth: OAuthTestClient) -> None:
    """AUTHZ-11: response parameters are added to the registered URI's query."""
    uri = "https://a.example/cb?x=1"
    client_id = oauth.register(redirect_uris=[uri])["client_id"]
    flow = oauth.login(client_id, redirect_uri=uri)
    assert flow.location.startswith("https://a.example/cb?x=1&code=")
    assert "#" not in flow.location
    _, error = oauth.authorize(client_id, redirect_uri=uri, response_type="token")
    assert error.headers["Location"].startswith("https://a.example/cb?x=1&error=")


def test_unknown_scopes_are_dropped_and_reported(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """AUTHZ-12, SCOPE-1: scope=bogus is dropped; the token's scope omits it."""
    flow = oauth.login(client_id, scope="mcp bogus")
    body = oauth.token(flow).get_json()
    assert body["scope"] == "mcp"


def test_oidc_scopes_never_fail(oauth: OAuthTestClient, client_id: str) -> None:
    """SCOPE-5: openid email profile (mcp-remote's fallback) still succeeds."""
    flow = oauth.login(client_id, scope="openid email profile")
    response = oauth.token(flow)
    assert response.status_code == 200
    assert not {"openid", "email", "profile"} & set(
        response.get_json()["scope"].split()
    )


def test_untrusted_client_sees_consent_before_any_redirect(
    client: t.Any, client_id: str
) -> None:
    """AUTHZ-15: a DCR client with scope=bogus gets a page, not an immediate 302."""
    response = _authorize(client, _params(client_id, scope="bogus"))
    assert _is_consent_page(response)
    assert "Location" not in response.headers


def test_success_redirect_has_code_state_iss_once(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """AUTHZ-16, ISS-1, ISS-2: one code, one state, one iss; no code_challenge."""
    flow = oauth.login(client_id)
    query = parse_qs(urlsplit(flow.location).query)
    assert len(query["code"]) == 1
    assert query["state"] == ["client-state"]
    assert query["iss"] == [ISSUER]
    assert "code_challenge" not in query
    metadata = oauth.client.get("/.well-known/oauth-authorization-server").get_json()
    assert query["iss"] == [metadata["issuer"]]


def test_authorize_answers_no_cors(client: t.Any, client_id: str) -> None:
    """AUTHZ-18: no Access-Control-Allow-Origin on the authorization endpoint."""
    origin = {"Origin": "https://evil.example"}
    preflight = client.options("/oauth2/authorize", headers=origin)
    assert "Access-Control-Allow-Origin" not in preflight.headers
    response = client.get(
        "/oauth2/authorize", query_string=_params(client_id), headers=origin
    )
    assert "Access-Control-Allow-Origin" not in response.headers


def test_no_code_without_upstream_login(oauth: OAuthTestClient, client_id: str) -> None:
    """AUTHZ-19: approving consent sends the browser to the IdP, never a code."""
    flow, _ = oauth.authorize(client_id)
    response = oauth.consent(flow)
    assert response.status_code == 303
    target = response.headers["Location"]
    assert not target.startswith(REDIRECT_URI)
    assert "code" not in parse_qs(urlsplit(target).query)


def test_authorization_binds_every_parameter(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """AUTHZ-17, CODE-11: the issued token reflects what was authorized."""
    flow = oauth.login(client_id, scope="mcp", resource=RESOURCE)
    body = oauth.token(flow).get_json()
    claims = decode_access_token(oauth.client, body["access_token"]).claims
    assert claims["client_id"] == client_id
    assert claims["scope"] == "mcp"
    assert claims["aud"] == RESOURCE


@pytest.mark.parametrize(
    "resource",
    [
        None,
        RESOURCE,
        "HTTP://127.0.0.1:9999/mcp",
        "http://127.0.0.1:9999/mcp/",
        "http://127.0.0.1:9999/mcp?client=chatgpt",
    ],
)
def test_resource_is_accepted_in_canonical_spellings(
    oauth: OAuthTestClient, client_id: str, resource: str | None
) -> None:
    """RES-1, RES-4, RES-5: canonical forms (or none) → aud is the canonical URI."""
    flow = oauth.login(client_id, resource=resource)
    body = oauth.token(flow).get_json()
    assert decode_access_token(oauth.client, body["access_token"]).claims["aud"] == (
        RESOURCE
    )


def test_post_authorize_is_also_accepted(client: t.Any, client_id: str) -> None:
    """GEN-8: GET is required; POST is optional and, when accepted, validated."""
    response = client.post("/oauth2/authorize", data=_params(client_id))
    assert _is_consent_page(response)


def test_registered_scope_is_the_most_a_client_may_get(
    oauth: OAuthTestClient,
) -> None:
    """RFC 7591 §2: a client registered for `mcp` cannot obtain `mcp:write`."""
    client_id = oauth.register(scope="mcp")["client_id"]
    flow = oauth.login(client_id, scope="mcp mcp:write")
    body = oauth.token(flow).get_json()
    assert body["scope"] == "mcp"


def test_registration_with_only_foreign_scopes_limits_nothing(
    oauth: OAuthTestClient,
) -> None:
    """SCOPE-5: a client registered for `openid email` still gets our scopes."""
    client_id = oauth.register(scope="openid email")["client_id"]
    flow = oauth.login(client_id, scope="mcp:write")
    assert oauth.token(flow).get_json()["scope"] == "mcp:write"


@pytest.mark.parametrize("uri", ["http://[::1/callback", "http://[zz]/callback"])
def test_unparseable_redirect_uri_is_a_page_not_a_500(
    client: t.Any, oauth: OAuthTestClient, uri: str
) -> None:
    """AUTHZ-3: a redirect_uri that is not even a URI is shown, never a 500."""
    client_id = oauth.register()["client_id"]
    _, response = oauth.authorize(client_id, redirect_uri=uri)
    assert_page(response, 400)
