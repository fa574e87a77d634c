"""proxy/web/client_ip.py: whom a request is counted against."""

from __future__ import annotations

import ipaddress

import pytest

from proxy.config.limits import Limits
from proxy.web.client_ip import client_ip
from proxy.web.client_ip import limit_subject

TRUSTING = Limits(trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),))


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.9", None, "203.0.113.9"),
        # An untrusted peer's header is the client's own writing: ignored.
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),
        ("127.0.0.1", "198.51.100.1", "198.51.100.1"),
        # Only the right-most untrusted hop is believed.
        ("127.0.0.1", "6.6.6.6, 198.51.100.1", "198.51.100.1"),
        ("127.0.0.1", "garbage", "127.0.0.1"),
    ],
)
def test_client_ip(peer: str, forwarded: str | None, expected: str) -> None:
    assert client_ip(peer, forwarded, TRUSTING) == expected


@pytest.mark.parametrize(
    ("ip", "subject"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("unknown", "unknown"),
    ],
)
def test_limits_count_an_ipv6_host_by_its_64(ip: str, subject: str) -> None:
    """Addresses a host can rotate through freely share one subject."""
    assert limit_subject(ip) == subject


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


def test_behind_an_inner_proxy_the_right_most_untrusted_hop_is_the_client() -> None:
    router = Limits(trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),))
    forwarded = "1.1.1.1, 198.51.100.7, 10.0.0.3"  # forged, client, inner proxy
    assert client_ip("10.0.0.2", forwarded, router) == "198.51.100.7"
