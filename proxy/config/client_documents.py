"""Settings for clients that identify themselves by URL: metadata documents and keys.

Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document)
and the JWKS behind `private_key_jwt` (RFC 7523) are fetched from the
internet on a user's behalf, so every fetch is bounded: size, time, which
addresses, which domains, how often, and how long a copy is trusted.
"""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass

from proxy.config.env import ConfigError
from proxy.config.limits import Rate
from proxy.config.limits import parse_rate

if t.TYPE_CHECKING:
    from proxy.config.env import EnvReader

_DOMAIN = re.compile(r"\.?([a-z0-9-]+\.)*[a-z0-9-]+")


@dataclass(frozen=True, slots=True)
class ClientDocuments:
    """CIMD_* and CLIENT_ASSERTION_* settings, one object built at start-up."""

    #: Accept https URLs as client ids (CIMD). Off: only static and DCR clients.
    enabled: bool = True
    #: When non-empty, only documents on these domains (suffix match) are used.
    allowed_domains: tuple[str, ...] = ()
    #: Documents on these domains (suffix match) are refused, even if allowed.
    denied_domains: tuple[str, ...] = ()
    #: Hosts that may resolve to loopback/private addresses (tests, intranets).
    allowed_private_hosts: frozenset[str] = frozenset()
    #: The draft recommends about 5 KB; a larger body is refused mid-read.
    max_document_bytes: int = 5120
    connect_timeout_seconds: float = 2.0
    #: The whole fetch, connect to last byte; clients give a login ~10 s.
    fetch_timeout_seconds: float = 3.0
    #: Cache-Control/Expires are honoured, clamped into [min, max].
    cache_min_seconds: int = 300
    cache_max_seconds: int = 86400
    #: A failed fetch is remembered this long, so a broken document is not
    #: fetched again on every request.
    negative_cache_seconds: int = 60
    #: A cached copy keeps serving this long past its expiry while refreshes fail.
    stale_if_error_seconds: int = 86400
    #: `exp` of a private_key_jwt assertion may be at most this far ahead.
    assertion_max_lifetime_seconds: int = 3600
    #: An unknown `kid` re-fetches a client's jwks_uri at most this often.
    jwks_refetch_min_seconds: int = 60
    #: RATE-4: network fetches to one host, whoever asks (the host is not
    #: ours to flood). A vendor serves many documents from one host
    #: (ChatGPT's per-app ones), and each is fetched once per cache period.
    fetches_per_host: Rate | None = Rate(60, 60)
    #: RATE-4: network fetches one client IP can cause (an uncached URL client
    #: id or jwks_uri): the requester pays, before the host's budget does.
    fetches_per_ip: Rate | None = Rate(30, 60)

    def domain_allowed(self, host: str) -> bool:
        """CIMD-14: the deny list wins; an empty allow list allows every domain."""
        host = host.lower().rstrip(".")
        if any(_suffix_match(host, d) for d in self.denied_domains):
            return False
        if not self.allowed_domains:
            return True
        return any(_suffix_match(host, d) for d in self.allowed_domains)

    @classmethod
    def from_env(cls, env: EnvReader) -> ClientDocuments:
        cache_min = env.integer("CIMD_CACHE_MIN_SECONDS", 300, 0, 7 * 86400)
        cache_max = env.integer("CIMD_CACHE_MAX_SECONDS", 86400, 1, 30 * 86400)
        if cache_max < cache_min:
            raise ConfigError(
                "CIMD_CACHE_MAX_SECONDS must be at least CIMD_CACHE_MIN_SECONDS"
            )
        return cls(
            enabled=env.flag("CIMD_ENABLED", True),
            allowed_domains=_domains(env, "CIMD_ALLOWED_DOMAINS"),
            denied_domains=_domains(env, "CIMD_DENIED_DOMAINS"),
            allowed_private_hosts=frozenset(
                h.lower() for h in env.items("CIMD_ALLOWED_PRIVATE_HOSTS")
            ),
            max_document_bytes=env.integer(
                "CIMD_MAX_DOCUMENT_BYTES", 5120, 512, 1024 * 1024
            ),
            connect_timeout_seconds=env.number(
                "CIMD_CONNECT_TIMEOUT_SECONDS", 2.0, 0.1, 30
            ),
            fetch_timeout_seconds=env.number(
                "CIMD_FETCH_TIMEOUT_SECONDS", 3.0, 0.1, 30
            ),
            cache_min_seconds=cache_min,
            cache_max_seconds=cache_max,
            negative_cache_seconds=env.integer(
                "CIMD_NEGATIVE_CACHE_SECONDS", 60, 0, 86400
            ),
            stale_if_error_seconds=env.integer(
                "CIMD_STALE_IF_ERROR_SECONDS", 86400, 0, 30 * 86400
            ),
            assertion_max_lifetime_seconds=env.integer(
                "CLIENT_ASSERTION_MAX_LIFETIME_SECONDS", 3600, 10, 86400
            ),
            jwks_refetch_min_seconds=env.integer(
                "JWKS_REFETCH_MIN_SECONDS", 60, 1, 86400
            ),
            fetches_per_host=parse_rate(
                "CIMD_FETCHES_PER_HOST", env.text("CIMD_FETCHES_PER_HOST", "60/minute")
            ),
            fetches_per_ip=parse_rate(
                "CIMD_FETCHES_PER_IP", env.text("CIMD_FETCHES_PER_IP", "30/minute")
            ),
        )


def _domains(env: EnvReader, name: str) -> tuple[str, ...]:
    domains = []
    for item in env.items(name):
        domain = item.lower().rstrip(".")
        if not _DOMAIN.fullmatch(domain):
            raise ConfigError(
                f"{name}: {item!r} is not a domain name, "
                f"e.g. {name}=chatgpt.com,claude.ai"
            )
        domains.append(domain.lstrip("."))
    return tuple(domains)


def _suffix_match(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)
