"""proxy/web/client_ip.py: X-Forwarded-For is believed only from trusted hops."""

from __future__ import annotations

import ipaddress

import pytest

from proxy.config.limits import Limits
from proxy.web.client_ip import client_ip

ROUTER = Limits(trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),))


def test_without_forwarded_for_the_peer_is_the_client() -> None:
    assert client_ip("203.0.113.9", None, ROUTER) == "203.0.113.9"


def test_an_untrusted_peer_cannot_choose_its_address() -> None:
    """RATE: a client that writes X-Forwarded-For itself gains nothing."""
    assert client_ip("203.0.113.9", "198.51.100.1", ROUTER) == "203.0.113.9"


def test_behind_a_trusted_router_the_right_most_untrusted_hop_is_the_client() -> None:
    forwarded = "1.1.1.1, 198.51.100.7, 10.0.0.3"  # forged, client, inner proxy
    assert client_ip("10.0.0.2", forwarded, ROUTER) == "198.51.100.7"


def test_garbage_from_a_trusted_hop_falls_back_to_the_peer() -> None:
    assert client_ip("10.0.0.2", "not-an-ip", ROUTER) == "10.0.0.2"


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [("198.51.100.7", "198.51.100.7"), ("6.6.6.6, 198.51.100.7", "198.51.100.7")],
)
def test_trusting_every_proxy_believes_one_hop_only(
    forwarded: str, expected: str
) -> None:
    """FORWARDED_ALLOW_IPS=*: what the router appended, never what the client wrote."""
    limits = Limits(trust_all_proxies=True)
    assert client_ip("172.16.0.1", forwarded, limits) == expected
