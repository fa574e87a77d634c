"""The client's IP address, believing X-Forwarded-For only from trusted proxies.

gunicorn's REMOTE_ADDR is the socket peer: behind a PaaS router, the router.
The client is then the right-most address in X-Forwarded-For that is not one
of our own trusted proxies (FORWARDED_ALLOW_IPS); anything further left was
written by the client and is never believed.

FORWARDED_ALLOW_IPS=* (a PaaS whose router addresses are unknown) trusts
exactly one hop: the right-most address, the one the router appended.
Believing the whole chain would let any client pick its own bucket.
"""

from __future__ import annotations

import ipaddress
import typing as t

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
