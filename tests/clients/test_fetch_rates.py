"""RATE-4: network fetches of client documents are charged per requester and per host.

On a real redis-server, through the one GCRA script every limit uses. The
fetcher is scripted: what matters is whether the cache lets a fetch happen.
"""

from __future__ import annotations

import typing as t

import pytest
import redis

from proxy.clients.document_source import DocumentError
from proxy.clients.documents import DocumentCache
from proxy.clients.fetch import Fetched
from proxy.config.client_documents import ClientDocuments
from proxy.config.limits import Rate
from proxy.store.documents import DocumentRecords
from proxy.store.keys import Keys
from proxy.store.limits import Limiter

HOST = "vendor.example.com"


def url(n: int, host: str = HOST) -> str:
    return f"https://{host}/oauth/app-{n}/client.json"


class EchoFetcher:
    """Serves a valid document for whatever URL it is asked; records the URLs."""

    def __init__(self) -> None:
        self.fetched: list[str] = []

    def fetch(self, url: str) -> Fetched:
        self.fetched.append(url)
        return Fetched(
            {
                "client_id": url,
                "client_name": "Vendor app",
                "redirect_uris": ["https://vendor.example.com/callback"],
            }
        )


class Requester:
    """The client IP behind the current request, as the web room reports it."""

    def __init__(self) -> None:
        self.ip: str | None = "203.0.113.7"

    def __call__(self) -> str | None:
        return self.ip


@pytest.fixture
def fetcher() -> EchoFetcher:
    return EchoFetcher()


@pytest.fixture
def requester() -> Requester:
    return Requester()


@pytest.fixture
def make_cache(
    real_redis: redis.Redis, fetcher: EchoFetcher, requester: Requester
) -> t.Callable[..., DocumentCache]:
    keys = Keys("test-rates:")

    def make(**settings: t.Any) -> DocumentCache:
        return DocumentCache(
            DocumentRecords(real_redis, keys),
            ClientDocuments(**settings),
            fetcher=fetcher,  # type: ignore[arg-type]
            limiter=Limiter(real_redis, keys),
            requester=requester,
        )

    return make


def test_distinct_urls_on_one_host_are_fetched_at_the_host_rate(
    make_cache: t.Callable[..., DocumentCache],
    fetcher: EchoFetcher,
    requester: Requester,
) -> None:
    """RATE-4: many URLs on one victim host, from many IPs, cost the host budget."""
    cache = make_cache(fetches_per_host=Rate(3, 60), fetches_per_ip=None)
    for n in range(3):
        requester.ip = f"198.51.100.{n}"
        cache.fetch_json(url(n), kind="client_metadata")
    requester.ip = "198.51.100.99"
    with pytest.raises(DocumentError) as refused:
        cache.fetch_json(url(3), kind="client_metadata")
    assert refused.value.reason.startswith(
        f"too many document fetches for {HOST}, try again in "
    )
    assert url(3) not in fetcher.fetched
    # Another host has its own budget.
    cache.fetch_json(url(0, host="other.example.org"), kind="client_metadata")
    assert len(fetcher.fetched) == 4


def test_cached_documents_are_never_refused(
    make_cache: t.Callable[..., DocumentCache], fetcher: EchoFetcher
) -> None:
    """RATE-4 limits fetches, not use: a cached copy serves with the budget spent."""
    cache = make_cache(fetches_per_host=Rate(1, 60), fetches_per_ip=Rate(1, 60))
    first = cache.fetch_json(url(0), kind="client_metadata")
    with pytest.raises(DocumentError):
        cache.fetch_json(url(1), kind="client_metadata")
    for _ in range(5):
        assert cache.fetch_json(url(0), kind="client_metadata") == first
    assert fetcher.fetched == [url(0)]


def test_one_requester_cannot_spend_the_hosts_budget(
    make_cache: t.Callable[..., DocumentCache],
    fetcher: EchoFetcher,
    requester: Requester,
) -> None:
    """RATE-4: the requester pays first, and a refused fetch costs the host nothing."""
    cache = make_cache(fetches_per_host=Rate(3, 60), fetches_per_ip=Rate(1, 60))
    cache.fetch_json(url(0), kind="client_metadata")
    for n in range(1, 6):
        with pytest.raises(DocumentError) as refused:
            cache.fetch_json(url(n), kind="client_metadata")
        assert "from your address" in refused.value.reason
    # The host's budget still has two fetches for other people.
    for n, ip in ((10, "198.51.100.1"), (11, "198.51.100.2")):
        requester.ip = ip
        cache.fetch_json(url(n), kind="client_metadata")
    requester.ip = "198.51.100.3"
    with pytest.raises(DocumentError) as refused:
        cache.fetch_json(url(12), kind="client_metadata")
    assert f"for {HOST}" in refused.value.reason
    assert fetcher.fetched == [url(0), url(10), url(11)]


def test_a_host_refusal_is_not_remembered_past_its_wait(
    make_cache: t.Callable[..., DocumentCache],
    real_redis: redis.Redis,
    requester: Requester,
) -> None:
    """The refusal is about the host's budget, not the document: its negative
    cache entry lasts the wait, not CIMD_NEGATIVE_CACHE_SECONDS."""
    cache = make_cache(
        fetches_per_host=Rate(1, 3600),
        fetches_per_ip=None,
        negative_cache_seconds=86400,
    )
    cache.fetch_json(url(0), kind="client_metadata")
    with pytest.raises(DocumentError):
        cache.fetch_json(url(1), kind="client_metadata")
    ttls = [real_redis.ttl(k) for k in real_redis.scan_iter("test-rates:docfail:*")]
    assert len(ttls) == 1
    assert 0 < ttls[0] <= 3600


def test_fetches_outside_a_request_are_charged_to_the_host_only(
    make_cache: t.Callable[..., DocumentCache],
    fetcher: EchoFetcher,
    requester: Requester,
) -> None:
    requester.ip = None
    cache = make_cache(fetches_per_host=Rate(2, 60), fetches_per_ip=Rate(1, 60))
    cache.fetch_json(url(0), kind="client_metadata")
    cache.fetch_json(url(1), kind="client_metadata")
    with pytest.raises(DocumentError, match="for vendor.example.com"):
        cache.fetch_json(url(2), kind="client_metadata")


def test_off_means_no_fetch_limit(
    make_cache: t.Callable[..., DocumentCache], fetcher: EchoFetcher
) -> None:
    cache = make_cache(fetches_per_host=None, fetches_per_ip=None)
    for n in range(100):
        cache.fetch_json(url(n), kind="client_metadata")
    assert len(fetcher.fetched) == 100
