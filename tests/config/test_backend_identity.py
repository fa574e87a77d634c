"""MCP_BACKEND_IDENTITY and MCP_BACKEND_AUDIENCE, read by Settings.from_env."""

from __future__ import annotations

import pytest

from proxy.config.backend_identity import BackendIdentity
from proxy.config.env import ConfigError
from proxy.config.settings import Settings

BASE = {
    "PUBLIC_URL": "https://mcp.example.com",
    "OAUTH_ISSUER": "https://idp.example.com/",
    "OAUTH_CLIENT_ID": "proxy-client",
    "OAUTH_CLIENT_SECRET": "proxy-secret",
    "MCP_BACKEND_URL": "http://10.0.0.5:8001/mcp",
}


def test_plain_headers_are_the_default() -> None:
    settings = Settings.from_env(BASE)
    assert settings.backend_identity is BackendIdentity.HEADERS
    assert settings.backend_audience is None


@pytest.mark.parametrize(
    ("value", "headers", "signed"),
    [("headers", True, False), ("JWT", False, True), ("both", True, True)],
)
def test_each_mode_says_what_it_sends(value: str, headers: bool, signed: bool) -> None:
    mode = Settings.from_env({**BASE, "MCP_BACKEND_IDENTITY": value}).backend_identity
    assert (mode.sends_headers, mode.sends_jwt) == (headers, signed)


def test_an_unknown_mode_is_named() -> None:
    with pytest.raises(ConfigError, match="MCP_BACKEND_IDENTITY"):
        Settings.from_env({**BASE, "MCP_BACKEND_IDENTITY": "signed"})


def test_the_audience_is_read() -> None:
    env = {**BASE, "MCP_BACKEND_AUDIENCE": "urn:example:backend"}
    assert Settings.from_env(env).backend_audience == "urn:example:backend"


@pytest.mark.parametrize(
    "audience", ["https://mcp.example.com/mcp", "https://mcp.example.com/mcp/"]
)
def test_the_audience_may_not_be_the_protected_resource(audience: str) -> None:
    """J61: an identity JWT could otherwise pass for an access token by its aud."""
    env = {**BASE, "MCP_BACKEND_AUDIENCE": audience}
    with pytest.raises(ConfigError, match="MCP_BACKEND_AUDIENCE"):
        Settings.from_env(env)
