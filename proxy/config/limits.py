"""Abuse limits: request rates, failed-authentication backoff, registration quotas.

Every limit is a setting with a default sized for real MCP clients (one
registration per client install, a handful of requests per login, a refresh
an hour), far above what they send and far below what a flood sends.
"""

from __future__ import annotations

import ipaddress
import re
import typing as t
from dataclasses import dataclass
from dataclasses import field

from proxy.config.env import ConfigError

if t.TYPE_CHECKING:
    from proxy.config.env import EnvReader

_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(second|minute|hour|day)\s*")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Rate:
    """`count` requests per `period_seconds`, all of them usable at once (burst)."""

    count: int
    period_seconds: int

    @property
    def interval_ms(self) -> int:
        """Milliseconds one request costs in the bucket (GCRA emission interval)."""
        return max(1, (self.period_seconds * 1000) // self.count)

    def __str__(self) -> str:
        unit = next(n for n, s in _PERIODS.items() if s == self.period_seconds)
        return f"{self.count}/{unit}"


def parse_rate(name: str, text: str) -> Rate | None:
    """`30/minute` → Rate(30, 60); `off` or `0` → None (no limit)."""
    if text.strip().lower() in ("off", "0", "none"):
        return None
    match = _RATE.fullmatch(text)
    if match is None or int(match[1]) == 0:
        raise ConfigError(
            f"{name}={text!r} is not a rate: write e.g. 30/minute, 5/second or off"
        )
    return Rate(int(match[1]), _PERIODS[match[2]])


#: Per client IP, by endpoint; (setting name, default).
IP_RATE_DEFAULTS: dict[str, str] = {
    "register": "20/minute",
    "authorize": "60/minute",
    "consent": "30/minute",
    "callback": "60/minute",
    "account": "60/minute",
    "token": "120/minute",
    "revoke": "60/minute",
    "introspect": "1200/minute",
}


DEFAULT_IP_RATES = {
    endpoint: t.cast(Rate, parse_rate(endpoint, text))
    for endpoint, text in IP_RATE_DEFAULTS.items()
}


@dataclass(frozen=True, slots=True)
class Limits:
    enabled: bool = True
    #: Per client IP, by endpoint blueprint name; a missing one is unlimited.
    per_ip: dict[str, Rate] = field(default_factory=lambda: dict(DEFAULT_IP_RATES))
    #: Per client id at token and revoke (shared by every user of that client).
    per_client: Rate | None = Rate(6000, 60)
    #: Per grant at the gateway (every MCP request of one authorization).
    per_grant: Rate | None = Rate(600, 60)
    #: Open gateway streams (SSE) per grant, counted in Redis over every
    #: worker and instance; 0 = no cap.
    max_streams_per_grant: int = 10
    #: Open gateway streams per worker process (each costs a greenlet and two
    #: sockets); an instance holds up to WEB_CONCURRENCY times this; 0 = no cap.
    max_streams: int = 1000
    #: A stream's per-grant slot is a lease its worker renews every third of
    #: this; a killed worker's slots are free again this long after it died.
    stream_lease_seconds: int = 60
    #: A relayed stream whose backend sends no byte for this long is ended
    #: (SDK servers ping every 15 s), and its slot given back.
    stream_idle_timeout_seconds: int = 120
    #: Failed client authentications tolerated per IP and client id before
    #: back-off starts; the back-off then doubles from 1 s up to the maximum.
    auth_failures_allowed: int = 5
    auth_backoff_max_seconds: int = 300
    #: DCR quotas: registrations per IP per day, and registered clients overall.
    registrations_per_ip_per_day: int = 200
    max_clients: int = 100_000
    #: A client that never redeemed a code expires after this; use slides it.
    unused_client_ttl_seconds: int = 86400
    #: Proxies whose X-Forwarded-For is believed (FORWARDED_ALLOW_IPS).
    trusted_proxies: tuple[Network, ...] = ()
    trust_all_proxies: bool = False

    @classmethod
    def from_env(cls, env: EnvReader) -> Limits:
        per_ip = {}
        for endpoint, default in IP_RATE_DEFAULTS.items():
            rate = _rate(env, f"RATE_LIMIT_{endpoint.upper()}", default)
            if rate is not None:
                per_ip[endpoint] = rate
        allowed = env.text("FORWARDED_ALLOW_IPS", "127.0.0.1")
        return cls(
            enabled=env.flag("RATE_LIMITS_ENABLED", True),
            per_ip=per_ip,
            per_client=parse_rate(
                "RATE_LIMIT_PER_CLIENT",
                env.text("RATE_LIMIT_PER_CLIENT", "6000/minute"),
            ),
            per_grant=parse_rate(
                "RATE_LIMIT_PER_GRANT", env.text("RATE_LIMIT_PER_GRANT", "600/minute")
            ),
            max_streams_per_grant=env.integer("MAX_STREAMS_PER_GRANT", 10, 0, 100_000),
            max_streams=env.integer("MAX_STREAMS", 1000, 0, 1_000_000),
            stream_lease_seconds=env.integer("STREAM_LEASE_SECONDS", 60, 3, 3600),
            stream_idle_timeout_seconds=env.integer(
                "STREAM_IDLE_TIMEOUT_SECONDS", 120, 1, 86400
            ),
            auth_failures_allowed=env.integer("AUTH_FAILURES_ALLOWED", 5, 1, 1000),
            auth_backoff_max_seconds=env.integer(
                "AUTH_BACKOFF_MAX_SECONDS", 300, 1, 86400
            ),
            registrations_per_ip_per_day=env.integer(
                "REGISTRATIONS_PER_IP_PER_DAY", 200, 0, 10_000_000
            ),
            max_clients=env.integer("MAX_CLIENTS", 100_000, 0, 1_000_000_000),
            unused_client_ttl_seconds=env.integer(
                "UNUSED_CLIENT_TTL_SECONDS", 86400, 60, 365 * 86400
            ),
            trusted_proxies=_networks("FORWARDED_ALLOW_IPS", allowed),
            trust_all_proxies=allowed.strip() == "*",
        )


def _rate(env: EnvReader, name: str, default: str) -> Rate | None:
    return parse_rate(name, env.text(name, default))


def _networks(name: str, text: str) -> tuple[Network, ...]:
    if text.strip() == "*":
        return ()
    networks = []
    for item in text.split(","):
        if not item.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ConfigError(
                f"{name}: {item.strip()!r} is not an IP address or network "
                "(write e.g. 127.0.0.1,10.0.0.0/8 or *)"
            ) from None
    return tuple(networks)
