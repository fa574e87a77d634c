"""proxy/config/redis_topology.py: REDIS_MODE, TLS, ACL, Sentinel and Cluster
settings, each error naming its variable; no password in any message."""

from __future__ import annotations

import pathlib

import pytest

from proxy.config.env import ConfigError
from proxy.config.settings import Settings
from proxy.config.settings import config_errors
from proxy.store.connection import RedisOptions

SECRET_HEX = "ab" * 32
BASE = {
    "PUBLIC_URL": "https://mcp.example.com",
    "OAUTH_ISSUER": "https://idp.example.com/",
    "OAUTH_CLIENT_ID": "proxy-client",
    "OAUTH_CLIENT_SECRET": "proxy-secret",
    "PROXY_SECRET_KEY": SECRET_HEX,
}
SENTINEL = {
    "REDIS_MODE": "sentinel",
    "REDIS_SENTINELS": "10.0.0.1:26379, [fd00::2]:26380",
    "REDIS_SENTINEL_MASTER": "proxy",
}

CLUSTER = {"REDIS_MODE": "cluster", "REDIS_URL": "redis://n1:7000"}


def _redis(**env: str) -> RedisOptions:
    return Settings.from_env({**BASE, **env}).redis_options


def _error(**env: str) -> str:
    with pytest.raises(ConfigError) as caught:
        _redis(**env)
    return str(caught.value)


@pytest.fixture
def pem(tmp_path: pathlib.Path) -> str:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return str(path)


def test_no_redis_url_is_the_embedded_store() -> None:
    options = _redis()
    assert not options.configured
    assert options.mode == "standalone"


def test_a_rediss_url_with_its_files_is_tls(pem: str) -> None:
    options = _redis(
        REDIS_URL="rediss://cache:6380/2",
        REDIS_CA_FILE=pem,
        REDIS_CLIENT_CERT=pem,
        REDIS_CLIENT_KEY=pem,
    )
    assert options.tls
    assert (options.ca_file, options.client_cert, options.client_key) == (pem,) * 3


def test_acl_credentials_may_come_apart_from_the_url(tmp_path: pathlib.Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    options = _redis(
        REDIS_URL="redis://cache:6379/0",
        REDIS_USERNAME="proxy",
        REDIS_PASSWORD_FILE=str(secret),
    )
    assert (options.username, options.password) == ("proxy", "from-a-file")


def test_sentinel_settings_are_parsed() -> None:
    options = _redis(**SENTINEL, REDIS_TLS="true", REDIS_WAIT_REPLICAS="1")
    assert options.configured
    assert options.sentinels == (("10.0.0.1", 26379), ("fd00::2", 26380))
    assert options.sentinel_master == "proxy"
    assert options.tls
    assert options.replica_acks == 1


def test_sentinel_needs_the_shared_secret_key() -> None:
    environ = {**BASE, **SENTINEL}
    del environ["PROXY_SECRET_KEY"]
    with pytest.raises(ConfigError, match="PROXY_SECRET_KEY"):
        Settings.from_env(environ)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"REDIS_MODE": "replicated"}, "REDIS_MODE"),
        ({"REDIS_URL": "http://cache:6379"}, "REDIS_URL"),
        ({"REDIS_MODE": "cluster"}, "REDIS_URL"),
        ({"REDIS_MODE": "cluster", "REDIS_URL": "redis://n1:7000/3"}, "REDIS_URL"),
        ({"REDIS_MODE": "cluster", "REDIS_URL": "unix:///tmp/r.sock"}, "REDIS_URL"),
        (
            {"REDIS_URL": "redis://u:p@cache:6379", "REDIS_PASSWORD": "q"},
            "REDIS_URL",
        ),
        ({"REDIS_PASSWORD": "q"}, "REDIS_PASSWORD"),
        ({"REDIS_URL": "redis://cache", "REDIS_SENTINELS": "a:1"}, "REDIS_SENTINELS"),
        ({"REDIS_URL": "redis://cache", "REDIS_TLS": "true"}, "REDIS_TLS"),
        ({**SENTINEL, "REDIS_URL": "redis://cache"}, "REDIS_URL"),
        ({**SENTINEL, "REDIS_SENTINELS": "cache"}, "REDIS_SENTINELS"),
        ({**SENTINEL, "REDIS_SENTINELS": ""}, "REDIS_SENTINELS"),
        ({**SENTINEL, "REDIS_SENTINEL_MASTER": ""}, "REDIS_SENTINEL_MASTER"),
        ({"REDIS_URL": "rediss://cache", "REDIS_CA_FILE": "/no/such"}, "REDIS_CA_FILE"),
        (
            {
                "REDIS_MODE": "cluster",
                "REDIS_URL": "redis://n1:7000",
                "REDIS_KEY_PREFIX": "{p}:",
            },
            "REDIS_KEY_PREFIX",
        ),
        (
            {
                "REDIS_MODE": "cluster",
                "REDIS_URL": "redis://n1",
                "REDIS_WAIT_REPLICAS": "1",
            },
            "REDIS_WAIT_REPLICAS",
        ),
    ],
)
def test_each_error_names_its_variable(env: dict[str, str], variable: str) -> None:
    assert variable in _error(**env)


def test_certificate_files_need_tls_and_come_in_pairs(pem: str) -> None:
    assert "TLS" in _error(REDIS_URL="redis://cache", REDIS_CA_FILE=pem)
    assert "REDIS_CLIENT_KEY" in _error(
        REDIS_URL="rediss://cache", REDIS_CLIENT_CERT=pem
    )


def test_a_bad_url_is_quoted_without_its_password() -> None:
    message = _error(REDIS_URL="http://proxy:hunter2@cache:6379")
    assert "hunter2" not in message
    assert "proxy:***@cache" in message


def test_check_reports_every_redis_error_at_once() -> None:
    errors = config_errors({**BASE, "REDIS_MODE": "nope", "REDIS_SENTINEL_MASTER": "x"})
    assert any("REDIS_MODE" in str(e) for e in errors)


def test_cluster_mode_needs_a_redis_py_that_pipelines_scripts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """redis-py before redis/redis-py#4206 refuses EVALSHA in a cluster
    pipeline: the start stops with the fix, not the first token request."""
    from proxy.config import redis_topology

    monkeypatch.setattr(redis_topology, "CLUSTER_PIPELINES_RUN_SCRIPTS", False)
    message = _error(**CLUSTER)
    assert "REDIS_MODE" in message
    assert "redis-py" in message
