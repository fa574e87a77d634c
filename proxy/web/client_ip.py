"""The client's IP address, believing X-Forwarded-For only from trusted proxies.

gunicorn's REMOTE_ADDR is the socket peer: behind a PaaS router, the router.
The client is then the right-most address in X-Forwarded-For that is not one
of our own trusted proxies (FORWARDED_ALLOW_IPS); anything further left was
written by the client and is never believed.

FORWARDED_ALLOW_IPS=* (a PaaS whose router addresses are unknown) trusts
exactly one hop: the right-most address, the one the router appended.
Believing the whole chain would let any client pick its own bucket.

Limits count an IPv6 client by its /64: one host is routinely given a whole
/64 and can pick a new address from it for every request, so counting single
IPv6 addresses would let it past every per-IP limit and registration quota,
leaving one counter key per address in Redis.
"""

from __future__ import annotations

import ipaddress
import typing as t

from flask import has_request_context
from flask import request

if t.TYPE_CHECKING:
    from proxy.config.limits import Limits


def _is_trusted(address: str, limits: Limits) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in limits.trusted_proxies)


def client_ip(
    remote_addr: str | None, forwarded_for: str | None, limits: Limits
) -> str:
    """The address to rate-limit by (see the module docstring)."""
    peer = remote_addr or "unknown"
    if not forwarded_for:
        return peer
    if not limits.trust_all_proxies and not _is_trusted(peer, limits):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    if limits.trust_all_proxies:
        hops = hops[-1:]
    for hop in reversed(hops):
        if not _is_trusted(hop, limits):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage from a trusted hop: fall back to the peer
    return hops[0] if hops else peer


#: The IPv6 prefix length one subscriber (one host) is typically given.
IPV6_SUBJECT_PREFIX = 64


def limit_subject(ip: str) -> str:
    """What per-IP limits count: an IPv4 address, or an IPv6 address's /64."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        network = ipaddress.ip_network(f"{address}/{IPV6_SUBJECT_PREFIX}", strict=False)
        return str(network)
    return str(address)


def request_subject(limits: Limits) -> str | None:
    """What per-IP limits count for the request being served; None outside one.

    Handed to the client-document cache, which charges the fetches a request
    causes to its client (RATE-4) without knowing about Flask.
    """
    if not has_request_context():
        return None
    return limit_subject(
        client_ip(request.remote_addr, request.headers.get("X-Forwarded-For"), limits)
    )
