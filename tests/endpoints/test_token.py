"""POST /oauth2/token: general rules, client authentication, authorization_code."""

from __future__ import annotations

import threading
import time
import typing as t

import pytest

import proxy.grants.authorization_code
from proxy import create_app
from proxy.config.env import StaticClient
from proxy.keys.keyring import sha256_hex
from tests.oauth_client import REDIRECT_URI
from tests.oauth_client import Flow
from tests.oauth_client import OAuthTestClient

from ._helpers import ISSUER
from ._helpers import RESOURCE
from ._helpers import ShiftedClock
from ._helpers import assert_json_error
from ._helpers import assert_no_store
from ._helpers import basic
from ._helpers import decode_access_token
from ._helpers import resource_status

TOKEN = "/oauth2/token"
STATIC_ID = "static-confidential"
STATIC_SECRET = "s3cr+t%20with:colon+plus%"  # noqa: S105


def _form(flow: Flow, **override: t.Any) -> dict[str, t.Any]:
    form = {
        "grant_type": "authorization_code",
        "code": flow.code,
        "code_verifier": flow.verifier,
        "client_id": flow.client_id,
        "redirect_uri": flow.redirect_uri,
    }
    form.update(override)
    return {k: v for k, v in form.items() if v is not None}


def _post(client: t.Any, form: t.Any, **kw: t.Any) -> t.Any:
    return client.post(TOKEN, data=form, **kw)


@pytest.fixture
def client_id(oauth: OAuthTestClient) -> str:
    return str(oauth.register()["client_id"])


@pytest.fixture
def flow(oauth: OAuthTestClient, client_id: str) -> Flow:
    return oauth.login(client_id)


@pytest.fixture
def static_oauth(settings: t.Any, fake_redis: t.Any) -> OAuthTestClient:
    """An app with one operator-registered confidential client."""
    static = StaticClient(
        client_id=STATIC_ID,
        redirect_uris=(REDIRECT_URI,),
        client_name="Static",
        client_secret_hash=sha256_hex(STATIC_SECRET),
    )
    app = create_app(
        settings.replace(static_clients=(static,)), redis_client=fake_redis
    )
    return OAuthTestClient(app.test_client())


# -- general rules ------------------------------------------------------------


def test_success_body_and_headers(oauth: OAuthTestClient, flow: Flow) -> None:
    """TOK-9, GEN-4: 200 JSON, Bearer, expires_in, scope, refresh, no-store."""
    response = oauth.token(flow)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert_no_store(response)
    body = response.get_json()
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], int)
    assert body["expires_in"] > 0
    assert body["scope"] == "mcp"
    assert body["access_token"]
    assert body["refresh_token"]


def test_access_token_claims(oauth: OAuthTestClient, flow: Flow) -> None:
    """RES-6, UP-8: an RFC 9068 JWT: iss, sub, aud, client_id, scope, times, jti."""
    body = oauth.token(flow).get_json()
    token = decode_access_token(oauth.client, body["access_token"])
    claims, header = token.claims, token.header
    assert header["typ"] == "at+jwt"
    jwks = oauth.client.get("/.well-known/jwks.json").get_json()
    assert header["kid"] in {k["kid"] for k in jwks["keys"]}
    assert claims["iss"] == ISSUER
    assert claims["sub"] == "alice@example.com"
    assert claims["aud"] == RESOURCE
    assert claims["client_id"] == flow.client_id
    assert claims["scope"] == "mcp"
    now = time.time()
    assert abs(claims["iat"] - now) < 60
    assert claims["exp"] == claims["iat"] + body["expires_in"]
    assert len(claims["jti"]) >= 16


def test_each_access_token_has_its_own_jti(oauth: OAuthTestClient) -> None:
    """RFC 9068 §2.2: jti is unique per token."""
    client_id = oauth.register()["client_id"]
    jtis = set()
    for _ in range(3):
        body = oauth.token(oauth.login(client_id)).get_json()
        jtis.add(decode_access_token(oauth.client, body["access_token"]).claims["jti"])
    assert len(jtis) == 3


def test_get_token_is_405_json(client: t.Any) -> None:
    """GEN-8: GET /token → 405 with a JSON error, never 200."""
    response = client.get(TOKEN)
    assert response.status_code == 405
    assert response.mimetype == "application/json"
    assert response.get_json()["error"] == "invalid_request"
    assert "POST" in response.headers["Allow"]


def test_json_body_is_invalid_request(client: t.Any, flow: Flow) -> None:
    """GEN-9: a JSON body at /token → 400 invalid_request JSON, not 415."""
    response = client.post(TOKEN, json=_form(flow))
    assert_json_error(response, 400, "invalid_request")
    assert_no_store(response)


@pytest.mark.parametrize(
    ("grant_type", "status", "error"),
    [
        (None, 400, "invalid_request"),
        ("", 400, "invalid_request"),
        ("password", 400, "unsupported_grant_type"),
        ("client_credentials", 400, "unsupported_grant_type"),
        ("implicit", 400, "unsupported_grant_type"),
        ("foo", 400, "unsupported_grant_type"),
    ],
)
def test_grant_type_must_be_supported(
    client: t.Any, client_id: str, grant_type: str | None, status: int, error: str
) -> None:
    """TOK-1, TOK-2, GEN-10: missing → invalid_request; others unsupported."""
    form = {"client_id": client_id}
    if grant_type is not None:
        form["grant_type"] = grant_type
    response = _post(client, form)
    body = assert_json_error(response, status, error)
    assert_no_store(response)
    description = body.get("error_description", "")
    assert '"' not in description
    assert "\\" not in description
    assert all(0x20 <= ord(c) <= 0x7E for c in description)


@pytest.mark.parametrize("name", ["code", "code_verifier", "grant_type", "client_id"])
def test_repeated_parameter_is_invalid_request(
    client: t.Any, flow: Flow, name: str
) -> None:
    """GEN-6: two code= (or any repeated parameter) → 400 invalid_request."""
    form: dict[str, t.Any] = _form(flow)
    form[name] = [form[name], form[name]]
    assert_json_error(_post(client, form), 400, "invalid_request")


def test_repeated_code_does_not_spend_it(
    oauth: OAuthTestClient, client: t.Any, flow: Flow
) -> None:
    """GEN-6: a refused malformed request leaves the code usable."""
    form: dict[str, t.Any] = _form(flow)
    form["code"] = [flow.code, flow.code]
    _post(client, form)
    assert oauth.token(flow).status_code == 200


def test_unknown_parameters_are_ignored(oauth: OAuthTestClient, flow: Flow) -> None:
    """GEN-5: foo=bar on a valid token request → the same success."""
    assert oauth.token(flow, foo="bar").status_code == 200


def test_empty_redirect_uri_is_absent(oauth: OAuthTestClient, flow: Flow) -> None:
    """GEN-7: redirect_uri= is treated as absent → 200."""
    assert oauth.token(flow, redirect_uri="").status_code == 200


def test_empty_verifier_is_missing(oauth: OAuthTestClient, flow: Flow) -> None:
    """GEN-7, CODE-3: code_verifier= is treated as absent → invalid_request."""
    assert_json_error(oauth.token(flow, code_verifier=""), 400, "invalid_request")


def test_codes_and_tokens_are_unguessable(oauth: OAuthTestClient) -> None:
    """GEN-11: unique values with at least 256 random bits in the secret part."""
    client_id = oauth.register()["client_id"]
    seen: set[str] = set()
    for _ in range(5):
        flow = oauth.login(client_id)
        body = oauth.token(flow).get_json()
        for value in (flow.code, body["refresh_token"]):
            secret = value.split(".", 1)[1]
            assert len(secret) >= 43
            seen.add(secret)
    assert len(seen) == 10


# -- client authentication ----------------------------------------------------


def test_public_client_needs_only_pkce(oauth: OAuthTestClient, flow: Flow) -> None:
    """TOK-7: a none client sends client_id and verifier, no secret → 200."""
    assert oauth.token(flow).status_code == 200


def test_client_id_is_required(oauth: OAuthTestClient, flow: Flow) -> None:
    """TOK-7: client_id omitted (and no Basic) → 400 invalid_request."""
    assert_json_error(oauth.token(flow, client_id=None), 400, "invalid_request")


def test_public_client_sending_a_secret_is_refused(
    oauth: OAuthTestClient, flow: Flow
) -> None:
    """TOK-7: a public client presenting a secret fails authentication."""
    response = oauth.token(flow, client_secret="anything")
    assert_json_error(response, 401, "invalid_client")


@pytest.mark.parametrize("method", ["client_secret_post", "client_secret_basic"])
def test_confidential_client_authenticates(
    oauth: OAuthTestClient, client: t.Any, method: str
) -> None:
    """TOK-3: the registered secret in the body or in Basic → 200."""
    registered = oauth.register(token_endpoint_auth_method=method)
    flow = oauth.login(registered["client_id"])
    secret = registered["client_secret"]
    if method == "client_secret_post":
        response = _post(client, _form(flow, client_secret=secret))
    else:
        response = _post(
            client, _form(flow, client_id=None), headers=basic(flow.client_id, secret)
        )
    assert response.status_code == 200, response.get_data(as_text=True)


def test_confidential_client_without_secret_is_401(
    oauth: OAuthTestClient, client: t.Any
) -> None:
    """TOK-3: a confidential client must authenticate; no secret → invalid_client."""
    registered = oauth.register(token_endpoint_auth_method="client_secret_post")
    flow = oauth.login(registered["client_id"])
    response = _post(client, _form(flow))
    assert_json_error(response, 401, "invalid_client")
    assert "WWW-Authenticate" not in response.headers


def test_wrong_post_secret_is_401(oauth: OAuthTestClient, client: t.Any) -> None:
    """TOK-5: a wrong client_secret in the body → 401 invalid_client."""
    registered = oauth.register(token_endpoint_auth_method="client_secret_post")
    flow = oauth.login(registered["client_id"])
    response = _post(client, _form(flow, client_secret="wrong"))
    assert_json_error(response, 401, "invalid_client")
    assert_no_store(response)


def test_basic_secret_is_form_urlencoded(static_oauth: OAuthTestClient) -> None:
    """TOK-4: a secret with + % : sent form-encoded in Basic → 200."""
    flow = static_oauth.login(STATIC_ID)
    response = _post(
        static_oauth.client,
        _form(flow, client_id=None),
        headers=basic(STATIC_ID, STATIC_SECRET),
    )
    assert response.status_code == 200, response.get_data(as_text=True)


def test_basic_secret_sent_raw_is_decoded_and_fails(
    static_oauth: OAuthTestClient,
) -> None:
    """TOK-4: the Basic parts are form-decoded ("+" is a space), so raw fails."""
    import base64

    flow = static_oauth.login(STATIC_ID)
    raw = base64.b64encode(f"{STATIC_ID}:{STATIC_SECRET}".encode()).decode()
    response = _post(
        static_oauth.client,
        _form(flow, client_id=None),
        headers={"Authorization": "Basic " + raw},
    )
    assert_json_error(response, 401, "invalid_client")


def test_wrong_basic_secret_is_401_with_www_authenticate(
    static_oauth: OAuthTestClient,
) -> None:
    """TOK-5: wrong Basic secret → 401 invalid_client, WWW-Authenticate: Basic."""
    flow = static_oauth.login(STATIC_ID)
    response = _post(
        static_oauth.client,
        _form(flow, client_id=None),
        headers=basic(STATIC_ID, "wrong"),
    )
    assert_json_error(response, 401, "invalid_client")
    assert response.headers["WWW-Authenticate"].lower().startswith("basic")
    assert_no_store(response)


@pytest.mark.parametrize(
    "header",
    [
        "Basic !!notbase64!!",
        "Basic bm9jb2xvbg==",
        "Basic 7Z+/",  # decodes, but to no `id:secret` pair
        "Basic /w==",  # decodes to a byte that is not UTF-8
        "Basic \xed\x9f\xbf",  # not ASCII: base64 itself refuses it
    ],
)
def test_malformed_basic_is_401(client: t.Any, flow: Flow, header: str) -> None:
    """TOK-5: undecodable Basic credentials → 401 with WWW-Authenticate: Basic."""
    response = _post(
        client, _form(flow, client_id=None), headers={"Authorization": header}
    )
    assert_json_error(response, 401, "invalid_client")
    assert response.headers["WWW-Authenticate"].lower().startswith("basic")


def test_basic_plus_body_secret_is_invalid_request(
    static_oauth: OAuthTestClient,
) -> None:
    """TOK-6: Basic and client_secret in the body at once → 400 invalid_request."""
    flow = static_oauth.login(STATIC_ID)
    response = _post(
        static_oauth.client,
        _form(flow, client_id=None, client_secret=STATIC_SECRET),
        headers=basic(STATIC_ID, STATIC_SECRET),
    )
    assert_json_error(response, 400, "invalid_request")


def test_basic_with_a_different_body_client_id_is_invalid_request(
    static_oauth: OAuthTestClient,
) -> None:
    """TOK-6: the body's client_id must name the Basic client."""
    flow = static_oauth.login(STATIC_ID)
    response = _post(
        static_oauth.client,
        _form(flow, client_id="someone-else"),
        headers=basic(STATIC_ID, STATIC_SECRET),
    )
    assert_json_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    "query", ["client_secret=x", "client_id=abc", "client_id=abc&client_secret=x"]
)
def test_credentials_in_the_query_are_refused(
    oauth: OAuthTestClient, client: t.Any, query: str
) -> None:
    """TOK-8: client credentials in the request URI → 400 invalid_request."""
    registered = oauth.register(token_endpoint_auth_method="client_secret_post")
    flow = oauth.login(registered["client_id"])
    form = _form(flow, client_secret=registered["client_secret"])
    response = client.post(TOKEN + "?" + query, data=form)
    assert_json_error(response, 400, "invalid_request")
    # The refused request did not spend the code.
    assert _post(client, form).status_code == 200


def test_store_outage_is_503(client: t.Any, flow: Flow, fake_server: t.Any) -> None:
    """Redis down at /token → 503 temporarily_unavailable, no-store."""
    fake_server.connected = False
    response = _post(client, _form(flow))
    assert_json_error(response, 503, "temporarily_unavailable")
    assert_no_store(response)
    fake_server.connected = True
    assert _post(client, _form(flow)).status_code == 200


# -- authorization_code -------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "random-garbage",
        "A" * 22 + "." + "B" * 43,
        "",
        "a.b",
    ],
)
def test_unknown_or_malformed_code_is_invalid_grant(
    client: t.Any, flow: Flow, code: str
) -> None:
    """CODE-1: an unknown or malformed code → 400 invalid_grant."""
    response = _post(client, _form(flow, code=code))
    expected = "invalid_request" if code == "" else "invalid_grant"
    assert_json_error(response, 400, expected)


def test_code_with_a_wrong_secret_is_invalid_grant(client: t.Any, flow: Flow) -> None:
    """CODE-1: the right grant id with a made-up secret → invalid_grant."""
    grant_id = flow.code.split(".", 1)[0]
    response = _post(client, _form(flow, code=grant_id + "." + "x" * 43))
    assert_json_error(response, 400, "invalid_grant")


def test_another_clients_code_is_invalid_grant(
    oauth: OAuthTestClient, flow: Flow
) -> None:
    """CODE-2: client B redeeming A's code → 400; A can still redeem it."""
    other = oauth.register()["client_id"]
    assert_json_error(oauth.token(flow, client_id=other), 400, "invalid_grant")
    assert oauth.token(flow).status_code == 200


def test_wrong_verifier_is_invalid_grant(oauth: OAuthTestClient, flow: Flow) -> None:
    """CODE-3: BASE64URL(SHA256(verifier)) must match → otherwise invalid_grant."""
    response = oauth.token(flow, code_verifier="w" * 64)
    assert_json_error(response, 400, "invalid_grant")
    assert_no_store(response)


def test_missing_verifier_is_invalid_request(
    oauth: OAuthTestClient, flow: Flow
) -> None:
    """CODE-3, CODE-5: no code_verifier → 400 invalid_request; never redeemed."""
    assert_json_error(oauth.token(flow, code_verifier=None), 400, "invalid_request")
    assert oauth.token(flow).status_code == 200


def test_plain_verifier_equal_to_challenge_is_refused(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """CODE-3: sending the challenge itself as verifier (plain) → invalid_grant."""
    flow = oauth.login(client_id)
    from proxy.oauth.pkce import s256

    response = oauth.token(flow, code_verifier=s256(flow.verifier))
    assert_json_error(response, 400, "invalid_grant")


@pytest.mark.parametrize("verifier", ["a" * 42, "a" * 129, "a" * 42 + "!"])
def test_malformed_verifier_is_refused(
    oauth: OAuthTestClient, flow: Flow, verifier: str
) -> None:
    """CODE-4: a verifier outside 43..128 unreserved characters → 400."""
    response = oauth.token(flow, code_verifier=verifier)
    assert response.status_code == 400
    assert response.get_json()["error"] in ("invalid_request", "invalid_grant")


def test_code_works_once_and_replay_revokes(
    oauth: OAuthTestClient, flow: Flow, app: t.Any
) -> None:
    """CODE-6: tolerance 0: the second redemption → invalid_grant, grant revoked."""
    assert app.extensions["proxy"].settings.code_replay_tolerance_seconds == 0
    first = oauth.token(flow)
    assert first.status_code == 200
    time.sleep(1.05)  # a later second: past any tolerance
    assert_json_error(oauth.token(flow), 400, "invalid_grant")
    refresh = oauth.refresh(flow.client_id, first.get_json()["refresh_token"])
    assert_json_error(refresh, 400, "invalid_grant")
    assert resource_status(oauth.client, first.get_json()["access_token"]) == 401
    store = app.extensions["proxy"].store
    assert not store.grant_exists(flow.code.split(".", 1)[0])


def test_code_replay_in_the_same_second_revokes_with_zero_tolerance(
    oauth: OAuthTestClient, flow: Flow
) -> None:
    """CODE-6: with tolerance 0 even an immediate replay revokes the grant."""
    first = oauth.token(flow)
    assert first.status_code == 200
    assert_json_error(oauth.token(flow), 400, "invalid_grant")
    refresh = oauth.refresh(flow.client_id, first.get_json()["refresh_token"])
    assert_json_error(refresh, 400, "invalid_grant")


def test_quick_duplicate_within_tolerance_keeps_the_grant(
    settings: t.Any, fake_redis: t.Any
) -> None:
    """CODE-6 (tolerance): a duplicate within 5 s → invalid_grant, grant kept."""
    app = create_app(
        settings.replace(code_replay_tolerance_seconds=5), redis_client=fake_redis
    )
    oauth = OAuthTestClient(app.test_client())
    client_id = oauth.register()["client_id"]
    flow = oauth.login(client_id)
    first = oauth.token(flow)
    assert first.status_code == 200
    assert_json_error(oauth.token(flow), 400, "invalid_grant")
    refresh = oauth.refresh(client_id, first.get_json()["refresh_token"])
    assert refresh.status_code == 200


def test_replay_with_a_bad_verifier_does_not_revoke(
    oauth: OAuthTestClient, flow: Flow
) -> None:
    """CODE-7: a replay that fails PKCE is refused without revoking the grant."""
    first = oauth.token(flow)
    time.sleep(1.05)
    assert_json_error(oauth.token(flow, code_verifier="w" * 64), 400, "invalid_grant")
    refresh = oauth.refresh(flow.client_id, first.get_json()["refresh_token"])
    assert refresh.status_code == 200


def test_replay_by_another_client_does_not_revoke(
    oauth: OAuthTestClient, flow: Flow
) -> None:
    """CODE-7: a replay under another client's identity cannot revoke."""
    first = oauth.token(flow)
    other = oauth.register()["client_id"]
    time.sleep(1.05)
    assert_json_error(oauth.token(flow, client_id=other), 400, "invalid_grant")
    refresh = oauth.refresh(flow.client_id, first.get_json()["refresh_token"])
    assert refresh.status_code == 200


def test_expired_code_is_invalid_grant(
    oauth: OAuthTestClient, flow: Flow, app: t.Any, monkeypatch: t.Any
) -> None:
    """CODE-8: a code redeemed after its TTL → invalid_grant."""
    ttl = app.extensions["proxy"].settings.code_ttl_seconds
    monkeypatch.setattr(proxy.grants.authorization_code, "time", ShiftedClock(ttl + 1))
    assert_json_error(oauth.token(flow), 400, "invalid_grant")


@pytest.mark.parametrize(
    ("redirect_uri", "status"),
    [
        (REDIRECT_URI, 200),
        (None, 200),
        ("http://127.0.0.1:5555/other", 400),
        ("http://127.0.0.1:5556/callback", 400),
        (REDIRECT_URI + "/", 400),
    ],
)
def test_redirect_uri_if_sent_must_match(
    oauth: OAuthTestClient, flow: Flow, redirect_uri: str | None, status: int
) -> None:
    """CODE-9: equal → 200; omitted → 200; different (even the port) → invalid_grant."""
    response = oauth.token(flow, redirect_uri=redirect_uri)
    assert response.status_code == status
    if status == 400:
        assert response.get_json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("resource", "status"),
    [
        (RESOURCE, 200),
        ("HTTP://127.0.0.1:9999/mcp/", 200),
        ("https://other.example/mcp", 400),
        ("not-a-uri", 400),
    ],
)
def test_resource_at_token_must_be_the_authorized_one(
    oauth: OAuthTestClient, client_id: str, resource: str, status: int
) -> None:
    """CODE-10, RES-1, RES-3: a resource outside the grant → invalid_target."""
    flow = oauth.login(client_id, resource=RESOURCE)
    response = oauth.token(flow, resource=resource)
    assert response.status_code == status
    if status == 400:
        assert response.get_json()["error"] == "invalid_target"
    else:
        token = response.get_json()["access_token"]
        assert decode_access_token(oauth.client, token).claims["aud"] == RESOURCE


def test_client_without_refresh_grant_gets_no_refresh_token(
    oauth: OAuthTestClient,
) -> None:
    """TOK-2, RT-9: a client registered without refresh_token gets none."""
    client_id = oauth.register(grant_types=["authorization_code"])["client_id"]
    body = oauth.token(oauth.login(client_id)).get_json()
    assert "refresh_token" not in body
    assert body["access_token"]


# -- races on a real redis-server ----------------------------------------------


@pytest.fixture
def real_oauth(settings: t.Any, real_redis: t.Any) -> OAuthTestClient:
    app = create_app(settings, redis_client=real_redis)
    return OAuthTestClient(app.test_client())


def test_concurrent_redemptions_let_exactly_one_win(
    real_oauth: OAuthTestClient,
) -> None:
    """CODE-6: N threads spend one code on a real Redis: exactly one 200."""
    client_id = real_oauth.register()["client_id"]
    flow = real_oauth.login(client_id)
    app = real_oauth.client.application
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def redeem() -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(client.post(TOKEN, data=_form(flow)).status_code)

    threads = [threading.Thread(target=redeem) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [400] * 7
