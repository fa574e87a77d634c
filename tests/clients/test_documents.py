"""proxy/clients/documents.py: the Redis document cache shared by every worker."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap
import typing as t

import pytest
import redis

from proxy.clients.document_source import DocumentError
from proxy.clients.documents import DocumentCache
from proxy.clients.documents import freshness_lifetime
from proxy.clients.fetch import Fetched
from proxy.config.client_documents import ClientDocuments
from proxy.store.documents import DocumentRecords
from proxy.store.documents import document_id
from proxy.store.keys import Keys
from tests.document_server import DocumentServer

ROOT = pathlib.Path(__file__).resolve().parents[2]
URL = "https://app.example.com/oauth/client.json"
SETTINGS = ClientDocuments(
    cache_min_seconds=300,
    cache_max_seconds=3600,
    negative_cache_seconds=60,
    stale_if_error_seconds=600,
    jwks_refetch_min_seconds=60,
)


def good_document(**members: t.Any) -> dict[str, t.Any]:
    return {
        "client_id": URL,
        "client_name": "Example",
        "redirect_uris": ["https://app.example.com/callback"],
        **members,
    }


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class ScriptedFetcher:
    """Answers from a list of results; counts what it was asked."""

    def __init__(self) -> None:
        self.answer: Fetched | DocumentError = Fetched(good_document())
        self.calls = 0

    def fetch(self, url: str) -> Fetched:
        self.calls += 1
        if isinstance(self.answer, DocumentError):
            raise self.answer
        return self.answer


@pytest.fixture
def keys() -> Keys:
    return Keys("test-docs:")


@pytest.fixture
def fetcher() -> ScriptedFetcher:
    return ScriptedFetcher()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(
    redis_client: redis.Redis, keys: Keys, fetcher: ScriptedFetcher, clock: Clock
) -> DocumentCache:
    redis_client.flushdb()
    return DocumentCache(
        DocumentRecords(redis_client, keys),
        SETTINGS,
        fetcher=fetcher,  # type: ignore[arg-type]
        clock=clock,
    )


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, 300),  # nothing stated: the minimum
        ({"cache-control": "max-age=1200"}, 1200),
        ({"cache-control": "public, max-age=1200, immutable"}, 1200),
        ({"cache-control": "max-age=1200", "age": "200"}, 1000),
        ({"cache-control": "max-age=10"}, 300),  # clamped up
        ({"cache-control": "max-age=999999"}, 3600),  # clamped down
        ({"cache-control": "no-store"}, 300),
        ({"cache-control": "no-cache, max-age=1200"}, 300),
        (
            {
                "expires": "Thu, 01 Jan 2026 01:00:00 GMT",
                "date": "Thu, 01 Jan 2026 00:40:00 GMT",
            },
            1200,
        ),
        ({"expires": "0"}, 300),  # invalid Expires: already expired
        (
            {"cache-control": "max-age=900", "expires": "Thu, 01 Jan 1970 00:00:00"},
            900,
        ),  # max-age wins over Expires
    ],
)
def test_freshness_follows_the_headers_clamped(
    headers: dict[str, str], expected: int
) -> None:
    """CIMD-9: HTTP cache headers, bounded by a minimum and a maximum."""
    assert freshness_lifetime(headers, now=0, minimum=300, maximum=3600) == expected


def test_a_fresh_copy_is_served_without_fetching(
    cache: DocumentCache, fetcher: ScriptedFetcher, clock: Clock
) -> None:
    first = cache.fetch_json(URL, kind="client_metadata")
    clock.now += 299
    assert cache.fetch_json(URL, kind="client_metadata") == first
    assert fetcher.calls == 1
    clock.now += 2
    cache.fetch_json(URL, kind="client_metadata")
    assert fetcher.calls == 2


def test_max_age_sets_how_long_a_copy_is_fresh(
    cache: DocumentCache, fetcher: ScriptedFetcher, clock: Clock
) -> None:
    fetcher.answer = Fetched(good_document(), {"cache-control": "max-age=1800"})
    cache.fetch_json(URL, kind="client_metadata")
    clock.now += 1799
    cache.fetch_json(URL, kind="client_metadata")
    assert fetcher.calls == 1
    clock.now += 2
    cache.fetch_json(URL, kind="client_metadata")
    assert fetcher.calls == 2


def test_the_cache_stores_the_validated_document(
    cache: DocumentCache, fetcher: ScriptedFetcher
) -> None:
    document = good_document(x_extra=1, grant_types=["authorization_code"])
    fetcher.answer = Fetched(document)
    body = cache.fetch_json(URL, kind="client_metadata")
    assert "x_extra" not in body
    assert body["token_endpoint_auth_method"] == "none"
    assert body["grant_types"] == ["authorization_code"]


def test_an_invalid_document_is_never_cached_as_valid(
    cache: DocumentCache,
    fetcher: ScriptedFetcher,
    clock: Clock,
    redis_client: redis.Redis,
    keys: Keys,
) -> None:
    """CIMD-9: a failure is cached only as a failure; once it ends, refetch."""
    fetcher.answer = Fetched(good_document(client_id=URL + "/"))
    with pytest.raises(DocumentError, match="client_id differs"):
        cache.fetch_json(URL, kind="client_metadata")
    doc_id = document_id("client_metadata", URL)
    assert redis_client.get(keys.document(doc_id)) is None
    # The negative cache: no fetch while it lives, the same reason shown.
    fetcher.answer = Fetched(good_document())
    with pytest.raises(DocumentError, match="client_id differs"):
        cache.fetch_json(URL, kind="client_metadata")
    assert fetcher.calls == 1
    # Fixed, and the negative TTL passed: fetched again and used.
    clock.now += SETTINGS.negative_cache_seconds + 1
    assert cache.fetch_json(URL, kind="client_metadata")["client_id"] == URL
    assert fetcher.calls == 2
    assert redis_client.get(keys.document_failure(doc_id)) is None


def test_a_failed_refresh_serves_the_stale_copy_within_bounds(
    cache: DocumentCache, fetcher: ScriptedFetcher, clock: Clock
) -> None:
    """stale-if-error, bounded by CIMD_STALE_IF_ERROR_SECONDS."""
    good = cache.fetch_json(URL, kind="client_metadata")
    fetcher.answer = DocumentError(f"{URL} answered 503")
    clock.now += 301  # stale now
    assert cache.fetch_json(URL, kind="client_metadata") == good
    assert fetcher.calls == 2
    # The failure is remembered: the stale copy is served without fetching.
    assert cache.fetch_json(URL, kind="client_metadata") == good
    assert fetcher.calls == 2
    # Past fresh + stale-if-error: the error shows.
    clock.now += SETTINGS.stale_if_error_seconds
    with pytest.raises(DocumentError, match="503"):
        cache.fetch_json(URL, kind="client_metadata")


def test_an_invalid_refresh_keeps_serving_the_last_good_copy(
    cache: DocumentCache, fetcher: ScriptedFetcher, clock: Clock
) -> None:
    good = cache.fetch_json(URL, kind="client_metadata")
    fetcher.answer = Fetched(good_document(client_secret="oops"))
    clock.now += 301
    assert cache.fetch_json(URL, kind="client_metadata") == good


def test_force_bypasses_a_fresh_copy_once_per_interval(
    cache: DocumentCache, fetcher: ScriptedFetcher, clock: Clock
) -> None:
    """An unknown kid re-fetches a JWKS, at most once per JWKS_REFETCH_MIN_SECONDS."""
    fetcher.answer = Fetched({"keys": [{"kid": "a"}]})
    cache.fetch_json(URL, kind="jwks")
    fetcher.answer = Fetched({"keys": [{"kid": "b"}]})
    assert cache.fetch_json(URL, kind="jwks", force=True) == {"keys": [{"kid": "b"}]}
    assert cache.fetch_json(URL, kind="jwks", force=True) == {"keys": [{"kid": "b"}]}
    assert fetcher.calls == 2


def test_a_jwks_must_be_a_jwk_set(
    cache: DocumentCache, fetcher: ScriptedFetcher
) -> None:
    fetcher.answer = Fetched({"kty": "EC"})
    with pytest.raises(DocumentError, match="JWK Set"):
        cache.fetch_json(URL, kind="jwks")


def test_the_pinned_fallback_is_used_only_when_the_live_fetch_fails(
    redis_client: redis.Redis, keys: Keys, fetcher: ScriptedFetcher, clock: Clock
) -> None:
    asked: list[str] = []

    def pinned(url: str) -> dict[str, t.Any] | None:
        asked.append(url)
        return good_document(client_name="Pinned")

    redis_client.flushdb()
    cache = DocumentCache(
        DocumentRecords(redis_client, keys),
        SETTINGS,
        fetcher=fetcher,  # type: ignore[arg-type]
        fallback=pinned,
        clock=clock,
    )
    assert cache.fetch_json(URL, kind="client_metadata")["client_name"] == "Example"
    assert asked == []
    clock.now += SETTINGS.cache_min_seconds + SETTINGS.stale_if_error_seconds + 1
    fetcher.answer = DocumentError("403 from the vendor's CDN")
    assert cache.fetch_json(URL, kind="client_metadata")["client_name"] == "Pinned"
    assert asked == [URL]


# -- single flight across processes, on the real Redis ----------------------------

_WORKER = textwrap.dedent(
    """
    import os, sys, time, json
    import redis
    from proxy.clients.documents import DocumentCache
    from proxy.clients.fetch import DocumentFetcher
    from proxy.config.client_documents import ClientDocuments
    from proxy.store.documents import DocumentRecords
    from proxy.store.keys import Keys

    settings = ClientDocuments(
        allowed_private_hosts=frozenset({"127.0.0.1"}), fetch_timeout_seconds=5.0
    )
    client = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    cache = DocumentCache(
        DocumentRecords(client, Keys(os.environ["PREFIX"])),
        settings,
        fetcher=DocumentFetcher(settings, ca_file=os.environ["CA_FILE"]),
    )
    print("ready", flush=True)
    go = os.environ["GO_FILE"]
    while not os.path.exists(go):
        time.sleep(0.01)
    body = cache.fetch_json(os.environ["URL"], kind="client_metadata")
    print(json.dumps(body["client_name"]), flush=True)
    """
)


def test_one_fetch_per_document_across_processes(
    document_server: DocumentServer,
    ca_file: str,
    redis_url: str,
    real_redis: redis.Redis,
    tmp_path: pathlib.Path,
) -> None:
    """RATE-4: workers in two processes ask at once; the document is fetched once."""
    path = "/oauth/client.json"
    document = document_server.client_document(path, ["https://app.example.com/cb"])
    # Slow enough that both processes ask while the first fetch is under way.
    url = document_server.serve_json(path, document, delay=1.0)
    go = tmp_path / "go"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": redis_url,
        "PREFIX": "single-flight:",
        "CA_FILE": ca_file,
        "GO_FILE": str(go),
        "URL": url,
    }
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        go.touch()
        outputs = [worker.communicate(timeout=30) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    for (out, err), worker in zip(outputs, workers, strict=True):
        assert worker.returncode == 0, err
        assert out.strip() == '"Example Agent"'
    assert document_server.hits[path] == 1
