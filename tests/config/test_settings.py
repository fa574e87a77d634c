"""proxy/config/settings.py: Settings.from_env, checked at start-up."""

from __future__ import annotations

import json
import pathlib
import typing as t

import pytest
from joserfc.jwk import ECKey

from proxy.config.env import ConfigError
from proxy.config.env import StaticClient
from proxy.config.settings import DEFAULT_KEY_PREFIX
from proxy.config.settings import DEFAULT_UPSTREAM_SCOPES
from proxy.config.settings import Settings

SECRET_HEX = "ab" * 32
BASE = {
    "PUBLIC_URL": "https://mcp.example.com",
    "OAUTH_ISSUER": "https://idp.example.com/",
    "OAUTH_CLIENT_ID": "proxy-client",
    "OAUTH_CLIENT_SECRET": "proxy-secret",
}


def _settings(**env: str | None) -> Settings:
    environ = {**BASE, **env}
    return Settings.from_env({k: v for k, v in environ.items() if v is not None})


def _config_error(**env: str | None) -> str:
    with pytest.raises(ConfigError) as exc:
        _settings(**env)
    return str(exc.value)


# -- every error names its variable ----------------------------------------------------


@pytest.mark.parametrize(
    "name", ["PUBLIC_URL", "OAUTH_ISSUER", "OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET"]
)
@pytest.mark.parametrize("value", [None, "", "   "])
def test_required_variable_missing_is_named(name: str, value: str | None) -> None:
    assert name in _config_error(**{name: value})


BAD_VALUES = [
    ("PUBLIC_URL", "mcp.example.com"),
    ("PUBLIC_URL", "ftp://mcp.example.com"),
    ("PUBLIC_URL", "https://"),
    ("PUBLIC_URL", "https://mcp.example.com/?x=1"),
    ("PUBLIC_URL", "https://mcp.example.com/#top"),
    ("PUBLIC_URL", "http://mcp.example.com"),
    ("MCP_PATH", "mcp"),
    ("MCP_PATH", "/mcp/"),
    ("OAUTH_AUDIENCE", "mcp.example.com/mcp"),
    ("OAUTH_AUDIENCE", "http://mcp.example.com/mcp"),
    ("OAUTH_AUDIENCE", "https://mcp.example.com/mcp#x"),
    ("OAUTH_AUDIENCE", "https://mcp.example.com:99999/mcp"),
    ("OAUTH_ISSUER", "idp.example.com"),
    ("OAUTH_ISSUER", "http://idp.example.com"),
    ("OAUTH_ISSUER", "https://idp.example.com/?tenant=1"),
    ("UPSTREAM_TIMEOUT_SECONDS", "soon"),
    ("UPSTREAM_TIMEOUT_SECONDS", "0"),
    ("UPSTREAM_TIMEOUT_SECONDS", "61"),
    ("OAUTH_USE_DYNAMIC_REGISTRATION", "maybe"),
    ("ACCESS_TOKEN_TTL_SECONDS", "1.5"),
    ("ACCESS_TOKEN_TTL_SECONDS", "59"),
    ("ACCESS_TOKEN_TTL_SECONDS", "86401"),
    ("REFRESH_TOKEN_TTL_SECONDS", "299"),
    ("REFRESH_TOKEN_MAX_LIFETIME_SECONDS", "x"),
    ("REFRESH_GRACE_SECONDS", "121"),
    ("REFRESH_GRACE_SECONDS", "-1"),
    ("AUTH_CODE_TTL_SECONDS", "9"),
    ("AUTH_CODE_TTL_SECONDS", "301"),
    ("CODE_REPLAY_TOLERANCE_SECONDS", "31"),
    ("CLIENT_TTL_SECONDS", "-1"),
    ("CONSENT_REMEMBER_SECONDS", "forever"),
    ("PROXY_SECRET_KEY", "not-hex"),
    ("PROXY_SECRET_KEY", "ab" * 31),
    ("PROXY_SECRET_KEY_PREVIOUS", "not-hex"),
    ("PROXY_SECRET_KEY_PREVIOUS", "cd" * 32 + ",ab"),
    ("MCP_BACKEND_URL", "backend:8080"),
    ("FORWARD_USER_HEADER", "X Bad Header"),
    ("MCP_BACKEND_CONNECT_TIMEOUT_SECONDS", "0"),
    ("MAX_STREAMS_PER_GRANT", "lots"),
    ("MAX_STREAMS_PER_GRANT", "-1"),
    ("MAX_STREAMS", "1e3"),
    ("STREAM_LEASE_SECONDS", "2"),
    ("STREAM_IDLE_TIMEOUT_SECONDS", "0"),
    ("STREAM_IDLE_TIMEOUT_SECONDS", "soon"),
    ("MCP_SESSION_TTL_SECONDS", "59"),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_malformed_value_is_named(name: str, value: str) -> None:
    assert name in _config_error(**{name: value})


def test_stream_idle_timeout_and_session_ttl_are_read() -> None:
    settings = _settings(
        STREAM_IDLE_TIMEOUT_SECONDS="30", MCP_SESSION_TTL_SECONDS="600"
    )
    assert settings.limits.stream_idle_timeout_seconds == 30
    assert settings.mcp_session_ttl_seconds == 600


def test_bad_public_url_port_is_named() -> None:
    assert "PUBLIC_URL" in _config_error(PUBLIC_URL="https://mcp.example.com:99999")


def test_max_lifetime_below_idle_ttl_is_named() -> None:
    message = _config_error(
        REFRESH_TOKEN_TTL_SECONDS="86400", REFRESH_TOKEN_MAX_LIFETIME_SECONDS="3600"
    )
    assert "REFRESH_TOKEN_MAX_LIFETIME_SECONDS" in message


def test_secret_key_is_required_with_redis_url() -> None:
    """Several processes share Redis, so they must share PROXY_SECRET_KEY."""
    message = _config_error(REDIS_URL="redis://localhost:6379/0")
    assert "PROXY_SECRET_KEY" in message


def test_secret_key_with_redis_url_is_used() -> None:
    settings = _settings(
        REDIS_URL="redis://localhost:6379/0", PROXY_SECRET_KEY=SECRET_HEX
    )
    assert settings.secret_key == bytes.fromhex(SECRET_HEX)
    assert settings.redis_url == "redis://localhost:6379/0"


def test_previous_secret_keys_are_a_comma_list_without_the_current_one() -> None:
    old, older = "cd" * 32, "ef" * 40
    settings = _settings(
        PROXY_SECRET_KEY=SECRET_HEX,
        PROXY_SECRET_KEY_PREVIOUS=f"{old}, {older},{SECRET_HEX},{old}",
    )
    assert settings.previous_secret_keys == (bytes.fromhex(old), bytes.fromhex(older))
    assert _settings(PROXY_SECRET_KEY=SECRET_HEX).previous_secret_keys == ()
    # Secrets never show in a repr (a logged Settings, a traceback).
    assert old not in repr(settings)
    assert repr(bytes.fromhex(old)) not in repr(settings)


def test_without_redis_a_secret_key_is_generated_per_start() -> None:
    first, second = _settings(), _settings()
    assert len(first.secret_key) == 32
    assert first.secret_key != second.secret_key


def test_signing_key_and_its_file_together_are_refused(tmp_path: pathlib.Path) -> None:
    pem = tmp_path / "key.pem"
    pem.write_text("pem")
    message = _config_error(SIGNING_KEY="pem", SIGNING_KEY_FILE=str(pem))
    assert "SIGNING_KEY" in message
    assert "SIGNING_KEY_FILE" in message


def test_unreadable_signing_key_file_is_named(tmp_path: pathlib.Path) -> None:
    message = _config_error(SIGNING_KEY_FILE=str(tmp_path / "missing.pem"))
    assert "SIGNING_KEY_FILE" in message


# -- defaults and normalisation --------------------------------------------------------


def test_defaults() -> None:
    settings = _settings()
    assert settings.public_url == "https://mcp.example.com"
    assert settings.issuer == "https://mcp.example.com"
    assert settings.upstream_issuer == "https://idp.example.com/"
    assert settings.upstream_client_id == "proxy-client"
    assert settings.upstream_client_secret == "proxy-secret"
    assert settings.mcp_path == "/mcp"
    assert settings.resource == "https://mcp.example.com/mcp"
    assert settings.upstream_audience is None
    assert settings.upstream_scopes == tuple(DEFAULT_UPSTREAM_SCOPES.split())
    assert settings.mcp_scopes == ("mcp",)
    assert settings.redis_url is None
    assert settings.key_prefix == DEFAULT_KEY_PREFIX == "mcpoauth:"
    assert settings.dynamic_registration is True
    assert settings.access_token_ttl_seconds == 3600
    assert settings.refresh_token_ttl_seconds == 30 * 86400
    assert settings.refresh_token_max_lifetime_seconds == 90 * 86400
    assert settings.refresh_grace_seconds == 30
    assert settings.code_ttl_seconds == 120
    assert settings.client_ttl_seconds == 90 * 86400
    assert settings.limits.max_streams_per_grant == 10
    assert settings.limits.max_streams == 1000
    assert settings.limits.stream_lease_seconds == 60
    assert settings.trusted_redirect_uris == frozenset()
    assert settings.allowed_redirect_schemes == frozenset()
    assert settings.static_clients == ()
    assert settings.signing_keys == ()
    assert settings.insecure_loopback is False


def test_values_are_read() -> None:
    settings = _settings(
        OAUTH_SCOPES="openid email",
        MCP_SCOPES="mcp mcp:write",
        REDIS_KEY_PREFIX="tenant1:",
        OAUTH_USE_DYNAMIC_REGISTRATION="false",
        ACCESS_TOKEN_TTL_SECONDS="600",
        CLIENT_TTL_SECONDS="0",
        UPSTREAM_TIMEOUT_SECONDS="2.5",
        TRUSTED_REDIRECT_URIS="https://chatgpt.com/cb, https://claude.ai/cb",
        ALLOWED_REDIRECT_SCHEMES="Com.Example.App",
    )
    assert settings.upstream_scopes == ("openid", "email")
    assert settings.mcp_scopes == ("mcp", "mcp:write")
    assert settings.key_prefix == "tenant1:"
    assert settings.dynamic_registration is False
    assert settings.access_token_ttl_seconds == 600
    assert settings.client_ttl_seconds == 0
    assert settings.upstream_timeout_seconds == 2.5
    assert settings.trusted_redirect_uris == {
        "https://chatgpt.com/cb",
        "https://claude.ai/cb",
    }
    assert settings.allowed_redirect_schemes == {"com.example.app"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("yes", True),
        ("ON", True),
        ("0", False),
        ("no", False),
        ("Off", False),
    ],
)
def test_booleans(value: str, expected: bool) -> None:
    assert (
        _settings(OAUTH_USE_DYNAMIC_REGISTRATION=value).dynamic_registration is expected
    )


def test_signing_key_file_is_read(tmp_path: pathlib.Path) -> None:
    """SIGNING_KEY(_FILE), the older name, is an alias of SIGNING_KEYS."""
    key = ECKey.generate_key("P-256", private=True)
    pem = tmp_path / "key.pem"
    pem.write_bytes(key.as_pem(private=True))
    (pinned,) = _settings(SIGNING_KEY_FILE=str(pem)).signing_keys
    assert pinned.kid == key.thumbprint()


def test_signing_key_in_the_environment_with_escaped_newlines() -> None:
    key = ECKey.generate_key("P-256", private=True)
    escaped = key.as_pem(private=True).decode().replace("\n", "\\n")
    (pinned,) = _settings(SIGNING_KEY=escaped).signing_keys
    assert pinned.kid == key.thumbprint()


def test_signing_keys_as_a_jwks_file(tmp_path: pathlib.Path) -> None:
    first = ECKey.generate_key("P-256", private=True)
    second = ECKey.generate_key("P-256", private=True)
    path = tmp_path / "jwks.json"
    path.write_text(
        json.dumps(
            {
                "keys": [
                    {**first.as_dict(private=True), "kid": "new"},
                    {**second.as_dict(private=False), "kid": "old"},
                ]
            }
        )
    )
    keys = _settings(SIGNING_KEYS_FILE=str(path)).signing_keys
    assert [k.kid for k in keys] == ["new", "old"]


def test_signing_keys_as_a_jwk_value() -> None:
    key = ECKey.generate_key("P-256", private=True)
    (pinned,) = _settings(
        SIGNING_KEYS=json.dumps(key.as_dict(private=True))
    ).signing_keys
    assert pinned.kid == key.thumbprint()


def test_signing_keys_and_the_alias_together_are_refused() -> None:
    pem = ECKey.generate_key("P-256", private=True).as_pem(private=True).decode()
    message = _config_error(SIGNING_KEYS=pem, SIGNING_KEY=pem)
    assert "SIGNING_KEYS" in message
    assert "SIGNING_KEY " in message or "SIGNING_KEY (" in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SIGNING_KEYS", "not a key"),
        ("SIGNING_KEYS", '{"keys": []}'),
        (
            "SIGNING_KEYS",
            "-----BEGIN PRIVATE KEY-----\\nabc\\n-----END PRIVATE KEY-----",
        ),
        ("SIGNING_KEY", "-----BEGIN-----\\nabc\\n-----END-----"),
        ("SIGNING_KEYS", json.dumps({"kty": "RSA", "n": "x", "e": "AQAB"})),
    ],
)
def test_bad_signing_keys_are_one_line_config_errors(name: str, value: str) -> None:
    message = _config_error(**{name: value})
    assert message.startswith(name + ":")
    assert "\n" not in message
    assert "ES256" in message


def test_a_bad_signing_keys_file_is_named(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "keys.pem"
    path.write_text(
        "-----BEGIN EC PRIVATE KEY-----\nnope\n-----END EC PRIVATE KEY-----\n"
    )
    message = _config_error(SIGNING_KEYS_FILE=str(path))
    assert message.startswith("SIGNING_KEYS_FILE:")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://mcp.example.com/", "https://mcp.example.com"),
        ("HTTPS://MCP.Example.COM", "https://mcp.example.com"),
        ("https://mcp.example.com/base/", "https://mcp.example.com/base"),
        ("  https://mcp.example.com  ", "https://mcp.example.com"),
        ("https://mcp.example.com:8443/", "https://mcp.example.com:8443"),
    ],
)
def test_public_url_is_normalised(value: str, expected: str) -> None:
    """DISC-3: one spelling of the issuer: lowercase host, no trailing slash."""
    settings = _settings(PUBLIC_URL=value)
    assert settings.public_url == expected
    assert settings.issuer == expected
    assert settings.url("/oauth2/token") == expected + "/oauth2/token"


def test_upstream_issuer_is_kept_byte_for_byte() -> None:
    """The upstream issuer is compared exactly with what the IdP advertises."""
    assert _settings(
        OAUTH_ISSUER="https://IdP.example.com/tenant/"
    ).upstream_issuer == ("https://IdP.example.com/tenant/")


@pytest.mark.parametrize("name", ["PUBLIC_URL", "OAUTH_ISSUER", "OAUTH_AUDIENCE"])
@pytest.mark.parametrize(
    "url",
    ["http://example.com", "http://10.0.0.1:8000", "http://localhost.example.com"],
)
def test_http_on_a_non_loopback_host_is_refused(name: str, url: str) -> None:
    """GEN-1: production config with an http URL refuses to start."""
    assert name in _config_error(**{name: url})


@pytest.mark.parametrize(
    "url", ["http://localhost:8000", "http://127.0.0.1:8000", "http://[::1]:8000"]
)
def test_http_on_loopback_is_allowed_for_development(url: str) -> None:
    """GEN-1: plain http only in a loopback development setup."""
    settings = _settings(PUBLIC_URL=url, OAUTH_ISSUER=url + "/idp")
    assert settings.public_url == url
    assert settings.insecure_loopback is True


# -- the resource (OAUTH_AUDIENCE) and the upstream audience ---------------------------


def test_audience_defaults_to_public_url_plus_mcp_path() -> None:
    """PRM-3: the resource is PUBLIC_URL + MCP_PATH."""
    settings = _settings(
        PUBLIC_URL="https://mcp.example.com/base/", MCP_PATH="/api/mcp"
    )
    assert settings.resource == "https://mcp.example.com/base/api/mcp"
    assert settings.mcp_path == "/api/mcp"


def test_audience_is_canonical() -> None:
    """RES-4: the configured resource is stored in canonical form."""
    settings = _settings(OAUTH_AUDIENCE="HTTPS://API.Example.COM:443/mcp/")
    assert settings.resource == "https://api.example.com/mcp"


def test_upstream_audience_is_off_by_default() -> None:
    assert _settings().upstream_audience is None


def test_upstream_audience_follows_oauth_audience() -> None:
    settings = _settings(OAUTH_AUDIENCE="https://api.example.com/mcp")
    assert settings.resource == "https://api.example.com/mcp"
    assert settings.upstream_audience == "https://api.example.com/mcp"


def test_upstream_audience_can_be_set_on_its_own() -> None:
    settings = _settings(
        OAUTH_AUDIENCE="https://api.example.com/mcp",
        OAUTH_UPSTREAM_AUDIENCE=" https://api.example.com/ ",
    )
    assert settings.upstream_audience == "https://api.example.com/"
    assert settings.resource == "https://api.example.com/mcp"


def test_empty_upstream_audience_turns_it_off() -> None:
    settings = _settings(
        OAUTH_AUDIENCE="https://api.example.com/mcp", OAUTH_UPSTREAM_AUDIENCE=""
    )
    assert settings.upstream_audience is None


# -- STATIC_CLIENTS_FILE ---------------------------------------------------------------


def _clients_file(tmp_path: pathlib.Path, data: t.Any) -> str:
    path = tmp_path / "clients.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_static_clients_are_read(tmp_path: pathlib.Path) -> None:
    path = _clients_file(
        tmp_path,
        [
            {"client_id": "cli", "redirect_uris": ["http://127.0.0.1/cb"]},
            {
                "client_id": "web",
                "client_name": "Web App",
                "redirect_uris": ["https://a.example/cb", "https://a.example/cb2"],
                "client_secret_sha256": "0" * 64,
                "scope": "mcp",
            },
        ],
    )
    clients = _settings(STATIC_CLIENTS_FILE=path).static_clients
    assert clients == (
        StaticClient("cli", ("http://127.0.0.1/cb",), "cli"),
        StaticClient(
            "web",
            ("https://a.example/cb", "https://a.example/cb2"),
            "Web App",
            "0" * 64,
            "mcp",
        ),
    )


@pytest.mark.parametrize(
    "data",
    [
        "not json",
        {"client_id": "x"},
        [{"redirect_uris": ["https://a.example/cb"]}],
        [{"client_id": 1, "redirect_uris": ["https://a.example/cb"]}],
        [{"client_id": "x"}],
        [{"client_id": "x", "redirect_uris": []}],
        [{"client_id": "x", "redirect_uris": "https://a.example/cb"}],
        [{"client_id": "x", "redirect_uris": [1]}],
        [
            {
                "client_id": "x",
                "redirect_uris": ["https://a.example/cb"],
                "client_secret_sha256": 1,
            }
        ],
        ["x"],
    ],
)
def test_malformed_static_clients_file_is_named(
    tmp_path: pathlib.Path, data: t.Any
) -> None:
    assert "STATIC_CLIENTS_FILE" in _config_error(
        STATIC_CLIENTS_FILE=_clients_file(tmp_path, data)
    )


def test_missing_static_clients_file_is_named(tmp_path: pathlib.Path) -> None:
    assert "STATIC_CLIENTS_FILE" in _config_error(
        STATIC_CLIENTS_FILE=str(tmp_path / "nope.json")
    )


def test_log_settings_default_to_info_text_with_the_audit_trail() -> None:
    settings = Settings.from_env(BASE)
    assert (settings.log_level, settings.log_format) == ("info", "text")
    assert settings.audit_log is True
    assert settings.flow_log is False


def test_log_settings_are_read() -> None:
    env = {**BASE, "LOG_LEVEL": "WARNING", "LOG_FORMAT": "json", "FLOW_LOG": "true"}
    settings = Settings.from_env(env)
    assert (settings.log_level, settings.log_format) == ("warning", "json")
    assert settings.flow_log is True


@pytest.mark.parametrize(
    ("name", "value"), [("LOG_LEVEL", "loud"), ("LOG_FORMAT", "xml")]
)
def test_bad_log_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**BASE, name: value})
