"""STATIC_CLIENTS_FILE: operator-registered clients that use private_key_jwt."""

from __future__ import annotations

import json
import pathlib
import typing as t

import pytest

from proxy.clients.registry import static_records
from proxy.config.env import ConfigError
from proxy.config.settings import Settings
from tests.client_assertions import jwks
from tests.client_assertions import private_key

BASE = {
    "PUBLIC_URL": "https://mcp.example.com",
    "OAUTH_ISSUER": "https://idp.example.com/",
    "OAUTH_CLIENT_ID": "proxy-client",
    "OAUTH_CLIENT_SECRET": "proxy-secret",
}


def _settings(tmp_path: pathlib.Path, client: dict[str, t.Any]) -> Settings:
    entry = {"client_id": "rs", "redirect_uris": ["https://rs.example/cb"], **client}
    path = tmp_path / "clients.json"
    path.write_text(json.dumps([entry]))
    return Settings.from_env({**BASE, "STATIC_CLIENTS_FILE": str(path)})


def test_a_static_client_with_jwks_uses_private_key_jwt(
    tmp_path: pathlib.Path,
) -> None:
    keys = jwks(private_key("ES256"))
    settings = _settings(tmp_path, {"jwks": keys, "introspection": True})
    record = static_records(settings)["rs"]
    assert record.token_endpoint_auth_method == "private_key_jwt"
    assert record.metadata["jwks"] == keys
    assert not record.is_public
    assert settings.static_clients[0].can_introspect


def test_a_static_client_with_jwks_uri_uses_private_key_jwt(
    tmp_path: pathlib.Path,
) -> None:
    uri = "https://rs.example/jwks.json"
    record = static_records(_settings(tmp_path, {"jwks_uri": uri}))["rs"]
    assert record.token_endpoint_auth_method == "private_key_jwt"
    assert record.metadata["jwks_uri"] == uri


@pytest.mark.parametrize(
    "client",
    [
        {"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}},
        {"jwks": {"keys": [private_key("RS256").as_dict(private=True)]}},
        {"jwks_uri": "http://rs.example/jwks.json"},
        {"jwks": {"keys": []}, "jwks_uri": "https://rs.example/jwks.json"},
        {"jwks_uri": "https://rs.example/jwks.json", "client_secret_sha256": "0" * 64},
        {"introspection": True},
    ],
)
def test_unusable_static_client_keys_stop_the_start(
    tmp_path: pathlib.Path, client: dict[str, t.Any]
) -> None:
    with pytest.raises(ConfigError) as caught:
        _settings(tmp_path, client)
    assert "STATIC_CLIENTS_FILE" in str(caught.value)
