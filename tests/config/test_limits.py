"""proxy/config/limits.py: rate settings parse, refuse nonsense, and default sanely."""

from __future__ import annotations

import pytest

from proxy.config.env import ConfigError
from proxy.config.env import EnvReader
from proxy.config.limits import Limits
from proxy.config.limits import Rate
from proxy.config.limits import parse_rate


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("30/minute", Rate(30, 60)),
        ("5/second", Rate(5, 1)),
        ("1000/hour", Rate(1000, 3600)),
        ("200/day", Rate(200, 86400)),
    ],
)
def test_rates_parse(text: str, rate: Rate) -> None:
    assert parse_rate("X", text) == rate


@pytest.mark.parametrize("text", ["off", "0", "none", "OFF"])
def test_a_rate_can_be_switched_off(text: str) -> None:
    assert parse_rate("X", text) is None


@pytest.mark.parametrize("text", ["abc", "10", "0/minute", "-1/minute", "5/fortnight"])
def test_a_bad_rate_names_its_setting(text: str) -> None:
    with pytest.raises(ConfigError, match="RATE_LIMIT_TOKEN"):
        parse_rate("RATE_LIMIT_TOKEN", text)


def test_defaults_limit_every_front_door() -> None:
    limits = Limits.from_env(EnvReader({}))
    assert limits.enabled
    assert set(limits.per_ip) == {
        "register",
        "authorize",
        "consent",
        "callback",
        "account",
        "token",
        "revoke",
        "introspect",
    }
    assert limits.per_client is not None
    assert limits.per_grant is not None


def test_settings_from_the_environment() -> None:
    limits = Limits.from_env(
        EnvReader(
            {
                "RATE_LIMIT_REGISTER": "off",
                "RATE_LIMIT_TOKEN": "7/second",
                "FORWARDED_ALLOW_IPS": "10.0.0.0/8, 192.0.2.1",
            }
        )
    )
    assert "register" not in limits.per_ip
    assert limits.per_ip["token"] == Rate(7, 1)
    assert len(limits.trusted_proxies) == 2
    assert not limits.trust_all_proxies


def test_a_bad_proxy_address_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="FORWARDED_ALLOW_IPS"):
        Limits.from_env(EnvReader({"FORWARDED_ALLOW_IPS": "10.0.0.0/33"}))
