"""CIMD_* / CLIENT_ASSERTION_* settings: defaults, bounds and the domain policy."""

from __future__ import annotations

import pytest

from proxy.config.client_documents import ClientDocuments
from proxy.config.env import ConfigError
from proxy.config.env import EnvReader
from proxy.config.limits import Rate


def documents(**environ: str) -> ClientDocuments:
    return ClientDocuments.from_env(EnvReader(environ))


def test_defaults_follow_the_draft() -> None:
    settings = documents()
    assert settings.enabled
    assert settings.max_document_bytes == 5120
    assert (settings.cache_min_seconds, settings.cache_max_seconds) == (300, 86400)
    assert settings.allowed_private_hosts == frozenset()
    assert settings.fetches_per_host == Rate(60, 60)
    assert settings.fetches_per_ip == Rate(30, 60)


def test_fetch_rates_are_settings_and_can_be_off() -> None:
    """RATE-4: CIMD_FETCHES_PER_HOST / CIMD_FETCHES_PER_IP."""
    settings = documents(CIMD_FETCHES_PER_HOST="600/hour", CIMD_FETCHES_PER_IP="off")
    assert settings.fetches_per_host == Rate(600, 3600)
    assert settings.fetches_per_ip is None


def test_an_empty_allow_list_allows_every_domain() -> None:
    assert documents().domain_allowed("chatgpt.com")


def test_the_allow_list_matches_by_suffix_on_a_label_boundary() -> None:
    settings = documents(CIMD_ALLOWED_DOMAINS="chatgpt.com, .claude.ai")
    assert settings.domain_allowed("chatgpt.com")
    assert settings.domain_allowed("cdn.chatgpt.com")
    assert settings.domain_allowed("CLAUDE.AI.")
    assert not settings.domain_allowed("evilchatgpt.com")
    assert not settings.domain_allowed("vscode.dev")


def test_the_deny_list_wins_over_the_allow_list() -> None:
    settings = documents(
        CIMD_ALLOWED_DOMAINS="example.com", CIMD_DENIED_DOMAINS="bad.example.com"
    )
    assert settings.domain_allowed("good.example.com")
    assert not settings.domain_allowed("x.bad.example.com")


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("CIMD_ALLOWED_DOMAINS", "https://chatgpt.com", "not a domain name"),
        ("CIMD_MAX_DOCUMENT_BYTES", "10", "out of range"),
        ("CIMD_ENABLED", "maybe", "not a boolean"),
        ("CIMD_FETCHES_PER_HOST", "lots", "not a rate"),
        ("CIMD_FETCHES_PER_IP", "10/fortnight", "not a rate"),
    ],
)
def test_a_bad_value_names_the_variable(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError, match=name) as exc:
        documents(**{name: value})
    assert says in str(exc.value)


def test_the_cache_bounds_must_be_ordered() -> None:
    with pytest.raises(ConfigError, match="CIMD_CACHE_MAX_SECONDS"):
        documents(CIMD_CACHE_MIN_SECONDS="600", CIMD_CACHE_MAX_SECONDS="60")
