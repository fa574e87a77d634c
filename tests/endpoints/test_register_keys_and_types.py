"""POST /oauth2/register: private_key_jwt keys, application_type, DCR turned off."""

from __future__ import annotations

import json
import typing as t

import pytest

from proxy import create_app
from proxy.config.env import StaticClient
from tests.client_assertions import jwks
from tests.client_assertions import private_key
from tests.client_assertions import public_jwk
from tests.oauth_client import REDIRECT_URI
from tests.oauth_client import OAuthTestClient

from ._helpers import assert_json_error
from ._helpers import assert_no_store

LOOPBACK = "http://127.0.0.1:33418/callback"
WEB = "https://app.example/callback"
CURSOR = [
    "cursor://anysphere.cursor-mcp/oauth/callback",
    "https://www.cursor.com/agents/mcp/oauth/callback",
    "http://localhost:8787/callback",
]


def _register(client: t.Any, body: dict[str, t.Any]) -> t.Any:
    return client.post("/oauth2/register", json=body)


def _ok(client: t.Any, body: dict[str, t.Any]) -> dict[str, t.Any]:
    response = _register(client, body)
    assert response.status_code == 201, response.get_data(as_text=True)
    return t.cast(dict[str, t.Any], response.get_json())


def _stored(app: t.Any, client_id: str) -> dict[str, t.Any]:
    store = app.extensions["proxy"].store
    return t.cast(
        dict[str, t.Any], json.loads(store.redis.get(store.keys.client(client_id)))
    )


def _key_client(**extra: t.Any) -> dict[str, t.Any]:
    body: dict[str, t.Any] = {
        "redirect_uris": [LOOPBACK],
        "token_endpoint_auth_method": "private_key_jwt",
    }
    body.update(extra)
    return body


# -- private_key_jwt ----------------------------------------------------------


def test_private_key_jwt_with_inline_jwks_gets_no_secret(
    client: t.Any, app: t.Any
) -> None:
    keys = jwks(private_key("RS256"), private_key("ES256"))
    body = _ok(client, _key_client(jwks=keys))
    assert body["token_endpoint_auth_method"] == "private_key_jwt"
    assert "client_secret" not in body
    assert "client_secret_expires_at" not in body
    assert body["jwks"] == keys
    stored = _stored(app, body["client_id"])
    assert stored["client_secret_hash"] is None
    assert stored["metadata"]["jwks"] == keys


def test_private_key_jwt_with_https_jwks_uri(client: t.Any, app: t.Any) -> None:
    uri = "https://app.example/.well-known/jwks.json"
    body = _ok(client, _key_client(jwks_uri=uri))
    assert body["jwks_uri"] == uri
    assert "client_secret" not in body
    assert _stored(app, body["client_id"])["metadata"]["jwks_uri"] == uri


@pytest.mark.parametrize(
    "extra",
    [
        {},  # no keys at all
        {"jwks_uri": "http://app.example/jwks.json"},
        {"jwks_uri": "https://app.example/jwks.json#frag"},
        {"jwks_uri": 5},
        {"jwks": {"keys": []}},
        {"jwks": "{}"},
        {"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}},
    ],
)
def test_unusable_keys_are_invalid_client_metadata(
    client: t.Any, extra: dict[str, t.Any]
) -> None:
    response = _register(client, _key_client(**extra))
    assert_json_error(response, 400, "invalid_client_metadata")
    assert_no_store(response)


@pytest.mark.parametrize("member", ["d", "p", "q"])
def test_jwks_with_private_members_is_refused(client: t.Any, member: str) -> None:
    """RFC 7591 §2: jwks holds the client's public keys."""
    key = private_key("RS256")
    jwk = public_jwk(key, **{member: key.as_dict(private=True)[member]})
    response = _register(client, _key_client(jwks={"keys": [jwk]}))
    assert_json_error(response, 400, "invalid_client_metadata")


def test_jwks_and_jwks_uri_together_are_refused(client: t.Any) -> None:
    """RFC 7591 §2: "MUST NOT both be present in the same request"."""
    body = _key_client(
        jwks=jwks(private_key("RS256")), jwks_uri="https://app.example/jwks.json"
    )
    assert_json_error(_register(client, body), 400, "invalid_client_metadata")


def test_keys_of_a_public_client_are_not_kept(client: t.Any, app: t.Any) -> None:
    """Keys serve only private_key_jwt; a `none` client's keys are dropped."""
    body = _ok(
        client,
        {
            "redirect_uris": [LOOPBACK],
            "token_endpoint_auth_method": "none",
            "jwks": jwks(private_key("RS256")),
        },
    )
    assert "jwks" not in body
    assert "jwks" not in _stored(app, body["client_id"])["metadata"]


# -- application_type ---------------------------------------------------------


def test_absent_type_with_loopback_is_native(client: t.Any, app: t.Any) -> None:
    """Clients before MCP 2026-07-28 send no application_type: never refused."""
    body = _ok(client, {"redirect_uris": [LOOPBACK]})
    assert body["application_type"] == "native"
    assert body["redirect_uris"] == [LOOPBACK]
    stored = _stored(app, body["client_id"])
    assert stored["metadata"]["application_type"] == "native"


def test_absent_type_with_https_only_is_web(client: t.Any) -> None:
    assert _ok(client, {"redirect_uris": [WEB]})["application_type"] == "web"


def test_cursor_registration_is_kept_whole(settings: t.Any, fake_redis: t.Any) -> None:
    """Cursor sends no application_type and a cursor://, https and loopback URI
    together; dropping any one breaks it."""
    app = create_app(
        settings.replace(allowed_redirect_schemes=frozenset({"cursor"})),
        redis_client=fake_redis,
    )
    body = _ok(app.test_client(), {"redirect_uris": CURSOR})
    assert body["redirect_uris"] == CURSOR
    assert body["application_type"] == "native"


def test_native_type_allows_loopback_and_https(client: t.Any) -> None:
    """RFC 8252 §7: loopback, private-use schemes and claimed https."""
    body = _ok(client, {"application_type": "native", "redirect_uris": [LOOPBACK, WEB]})
    assert body["redirect_uris"] == [LOOPBACK, WEB]
    assert body["application_type"] == "native"


def test_web_type_keeps_only_https_on_public_hosts(client: t.Any) -> None:
    """OpenID Connect Registration §2: web clients register https and no
    localhost; the others are dropped and the accepted set echoed (J1)."""
    uris = [LOOPBACK, "https://localhost/cb", "https://127.0.0.1/cb", WEB]
    body = _ok(client, {"application_type": "web", "redirect_uris": uris})
    assert body["redirect_uris"] == [WEB]
    assert body["application_type"] == "web"


def test_web_type_with_only_loopback_is_refused(client: t.Any) -> None:
    response = _register(
        client, {"application_type": "web", "redirect_uris": [LOOPBACK]}
    )
    assert_json_error(response, 400, "invalid_redirect_uri")


@pytest.mark.parametrize("value", ["desktop", "", 1, ["web"]])
def test_unknown_application_type_is_refused(client: t.Any, value: t.Any) -> None:
    response = _register(client, {"application_type": value, "redirect_uris": [WEB]})
    assert_json_error(response, 400, "invalid_client_metadata")


# -- OAUTH_USE_DYNAMIC_REGISTRATION=false -------------------------------------


STATIC_ID = "static-public"


@pytest.fixture
def no_dcr_app(settings: t.Any, fake_redis: t.Any) -> t.Any:
    static = StaticClient(
        client_id=STATIC_ID, redirect_uris=(REDIRECT_URI,), client_name="Static"
    )
    return create_app(
        settings.replace(dynamic_registration=False, static_clients=(static,)),
        redis_client=fake_redis,
    )


def test_registration_off_answers_a_clear_json_error(no_dcr_app: t.Any) -> None:
    client = no_dcr_app.test_client()
    response = _register(client, {"redirect_uris": [LOOPBACK]})
    body = assert_json_error(response, 404, "not_found")
    assert "Dynamic Client Registration" in body["error_description"]
    assert_no_store(response)
    metadata = client.get("/.well-known/oauth-authorization-server").get_json()
    assert "registration_endpoint" not in metadata


def test_static_clients_keep_working_without_dcr(no_dcr_app: t.Any) -> None:
    oauth = OAuthTestClient(no_dcr_app.test_client())
    flow = oauth.login(STATIC_ID)
    response = oauth.token(flow)
    assert response.status_code == 200, response.get_data(as_text=True)
    refreshed = oauth.refresh(STATIC_ID, response.get_json()["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_data(as_text=True)


def test_clients_registered_before_dcr_was_turned_off_are_not_honoured(
    settings: t.Any, fake_redis: t.Any
) -> None:
    before = OAuthTestClient(
        create_app(settings, redis_client=fake_redis).test_client()
    )
    client_id = before.register()["client_id"]
    after = create_app(
        settings.replace(dynamic_registration=False), redis_client=fake_redis
    ).test_client()
    response = after.post(
        "/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": "a.b",
            "client_id": client_id,
        },
    )
    assert_json_error(response, 401, "invalid_client")
