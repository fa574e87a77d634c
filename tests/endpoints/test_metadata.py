"""GET /.well-known/oauth-authorization-server, openid-configuration, jwks.json."""

from __future__ import annotations

import typing as t
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest

from proxy import create_app
from tests.oauth_client import OAuthTestClient

from ._helpers import ISSUER
from ._helpers import assert_page
from ._helpers import redirect_params

AS_METADATA = "/.well-known/oauth-authorization-server"
OIDC_METADATA = "/.well-known/openid-configuration"
URL_FIELDS = (
    "issuer",
    "authorization_endpoint",
    "token_endpoint",
    "jwks_uri",
    "registration_endpoint",
    "revocation_endpoint",
)


def _metadata(client: t.Any, path: str = AS_METADATA, **headers: str) -> t.Any:
    response = client.get(path, headers=headers)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def test_as_metadata_is_served_as_json(client: t.Any) -> None:
    """DISC-1: RFC 8414 metadata at the well-known path, 200 application/json."""
    document = _metadata(client)
    assert document["issuer"] == ISSUER


@pytest.mark.parametrize(
    "field",
    [
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "registration_endpoint",
        "revocation_endpoint",
        "code_challenge_methods_supported",
        "response_types_supported",
        "grant_types_supported",
        "token_endpoint_auth_methods_supported",
        "scopes_supported",
        "authorization_response_iss_parameter_supported",
    ],
)
def test_openid_configuration_equals_as_metadata(client: t.Any, field: str) -> None:
    """DISC-2: the OIDC discovery document has the same content as RFC 8414's."""
    assert _metadata(client, OIDC_METADATA)[field] == _metadata(client)[field]


def test_issuer_is_the_prefix_the_well_known_path_was_inserted_into(
    client: t.Any,
) -> None:
    """DISC-3: issuer byte for byte, no trailing slash, query or fragment."""
    issuer = _metadata(client)["issuer"]
    assert issuer == ISSUER
    assert not issuer.endswith("/")
    assert "?" not in issuer
    assert "#" not in issuer


def test_https_issuer_has_only_https_urls(settings: t.Any, fake_redis: t.Any) -> None:
    """GEN-2, DISC-3: with an https PUBLIC_URL every advertised URL is https."""
    app = create_app(
        settings.replace(
            public_url="https://as.example", resource="https://as.example/mcp"
        ),
        redis_client=fake_redis,
    )
    document = _metadata(app.test_client())
    assert document["issuer"] == "https://as.example"
    for field in URL_FIELDS:
        assert document[field].startswith("https://as.example")


def test_endpoints_are_advertised(client: t.Any) -> None:
    """DISC-4: authorization_endpoint and token_endpoint are present."""
    document = _metadata(client)
    assert document["authorization_endpoint"] == ISSUER + "/oauth2/authorize"
    assert document["token_endpoint"] == ISSUER + "/oauth2/token"


def test_response_types_are_code_only(client: t.Any) -> None:
    """DISC-5: response_types_supported equals ["code"]."""
    assert _metadata(client)["response_types_supported"] == ["code"]


def test_pkce_methods_are_s256_only(client: t.Any) -> None:
    """DISC-6: code_challenge_methods_supported is ["S256"], never plain."""
    assert _metadata(client)["code_challenge_methods_supported"] == ["S256"]


def test_grant_types_are_explicit(client: t.Any) -> None:
    """DISC-7: authorization_code and refresh_token; no implicit, no password."""
    grant_types = _metadata(client)["grant_types_supported"]
    assert grant_types == ["authorization_code", "refresh_token"]


def test_auth_methods_include_none(client: t.Any) -> None:
    """DISC-8: the methods /token accepts, including none for public clients."""
    methods = _metadata(client)["token_endpoint_auth_methods_supported"]
    assert set(methods) == {
        "none",
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    }


def test_private_key_jwt_algorithms_are_asymmetric_only(client: t.Any) -> None:
    """DISC-8: private_key_jwt is advertised with its signing algorithms, which
    never include none or HMAC, at the token and revocation endpoints."""
    document = _metadata(client)
    assert "private_key_jwt" in document["revocation_endpoint_auth_methods_supported"]
    for field in (
        "token_endpoint_auth_signing_alg_values_supported",
        "revocation_endpoint_auth_signing_alg_values_supported",
    ):
        algs = document[field]
        assert {"RS256", "PS256", "ES256", "EdDSA"} <= set(algs)
        assert not {a for a in algs if a == "none" or a.startswith("HS")}


def test_registration_endpoint_works_when_advertised(
    client: t.Any, oauth: OAuthTestClient
) -> None:
    """DISC-9: registration_endpoint is present and an open POST to it works."""
    assert _metadata(client)["registration_endpoint"] == ISSUER + "/oauth2/register"
    assert oauth.register()["client_id"]


def test_registration_endpoint_absent_without_dcr(
    settings: t.Any, fake_redis: t.Any
) -> None:
    """DISC-9: with DCR turned off it is not advertised and does not answer."""
    app = create_app(
        settings.replace(dynamic_registration=False), redis_client=fake_redis
    )
    client = app.test_client()
    assert "registration_endpoint" not in _metadata(client)
    response = client.post("/oauth2/register", json={"redirect_uris": ["https://a/"]})
    assert response.status_code == 404


def test_cimd_is_advertised_by_default(client: t.Any) -> None:
    """DISC-10: CIMD_ENABLED defaults to true (tests/endpoints/test_cimd.py
    checks that the flag disappears when it is turned off)."""
    assert _metadata(client)["client_id_metadata_document_supported"] is True


def test_only_implemented_optional_endpoints_are_advertised(client: t.Any) -> None:
    """DISC-11: revocation is advertised and answers; introspection only when a
    client may use it (none is configured here)."""
    document = _metadata(client)
    assert "introspection_endpoint" not in document
    assert document["revocation_endpoint"] == ISSUER + "/oauth2/revoke"
    response = client.post(
        "/oauth2/revoke", data={"token": "garbage", "client_id": "nobody"}
    )
    assert response.status_code != 404


def test_offline_access_is_listed_and_yields_a_refresh_token(
    client: t.Any, oauth: OAuthTestClient
) -> None:
    """DISC-12: offline_access is listed, and a flow requesting it is refreshable."""
    assert "offline_access" in _metadata(client)["scopes_supported"]
    client_id = oauth.register()["client_id"]
    flow = oauth.login(client_id, scope="mcp offline_access")
    body = oauth.token(flow).get_json()
    assert "offline_access" in body["scope"].split()
    assert body["refresh_token"]


def test_iss_flag_matches_what_redirects_carry(
    client: t.Any, oauth: OAuthTestClient
) -> None:
    """DISC-13: the flag is true, and success and error redirects carry iss."""
    assert _metadata(client)["authorization_response_iss_parameter_supported"] is True
    client_id = oauth.register()["client_id"]
    flow = oauth.login(client_id)
    assert parse_qs(urlsplit(flow.location).query)["iss"] == [ISSUER]
    _, error = oauth.authorize(client_id, response_type="token")
    assert redirect_params(error)["iss"] == [ISSUER]


@pytest.mark.parametrize("path", [AS_METADATA, OIDC_METADATA])
def test_metadata_ignores_request_headers_and_omits_empty_claims(
    client: t.Any, path: str
) -> None:
    """DISC-14: same document whatever headers; no zero-element claims."""
    plain = _metadata(client, path)
    with_version = _metadata(client, path, **{"MCP-Protocol-Version": "2025-11-25"})
    assert with_version == plain
    for value in plain.values():
        assert value not in ([], {}, None, "")


def test_metadata_needs_no_authentication_and_is_cacheable(client: t.Any) -> None:
    """DISC-15, PRM-16: served without credentials, with a max-age."""
    response = client.get(AS_METADATA)
    assert response.status_code == 200
    assert "max-age=" in response.headers["Cache-Control"]


def test_path_inserted_metadata_for_a_foreign_path_is_404(client: t.Any) -> None:
    """DISC-1: only the issuer's own path is served (RFC 8414 §3.1)."""
    assert_page(client.get(AS_METADATA + "/other"), 404)


def test_jwks_publishes_public_signing_keys(client: t.Any) -> None:
    """RES-6: the JWKS serves the public EC keys that sign access tokens."""
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    keys = response.get_json()["keys"]
    assert keys
    for key in keys:
        assert key["kid"]
        assert key["alg"] == "ES256"
        assert "d" not in key


@pytest.mark.parametrize(
    ("public_url", "starts"),
    [
        ("http://as.example", False),
        ("https://as.example", True),
        ("http://127.0.0.1:8000", True),
        ("http://localhost:8000", True),
    ],
)
def test_plain_http_is_only_for_loopback(public_url: str, starts: bool) -> None:
    """GEN-1: an http issuer outside loopback stops the start; https never does."""
    from proxy.config.env import ConfigError
    from proxy.config.settings import Settings

    environ = {
        "PUBLIC_URL": public_url,
        "OAUTH_ISSUER": "https://idp.example",
        "OAUTH_CLIENT_ID": "proxy",
        "OAUTH_CLIENT_SECRET": "secret",
    }
    if starts:
        assert Settings.from_env(environ).issuer == public_url
    else:
        with pytest.raises(ConfigError, match="PUBLIC_URL"):
            Settings.from_env(environ)
