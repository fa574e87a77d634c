"""proxy/store/documents.py: the client-document cache's Redis side, on every
topology (its four keys share one hash tag, so one node serves them all)."""

from __future__ import annotations

import uuid

import pytest
import redis

from proxy.store import Store
from proxy.store.documents import document_id

DOC = document_id("client_metadata", "https://app.example.com/client.json")


@pytest.fixture
def store(redis_client: redis.Redis) -> Store:
    return Store(redis_client, f"t-{uuid.uuid4().hex[:8]}:")


def test_a_written_document_reads_back_and_clears_the_failure(store: Store) -> None:
    store.documents.write_failure(DOC, '{"reason": "timeout"}', 60)
    assert store.documents.read(DOC) == (None, '{"reason": "timeout"}')
    store.documents.write(DOC, '{"v": 1}', 300)
    assert store.documents.read(DOC) == ('{"v": 1}', None)
    assert 0 < store.redis.ttl(store.keys.document(DOC)) <= 300


def test_a_lost_write_script_is_loaded_again(store: Store) -> None:
    """After a Redis restart (SCRIPT FLUSH, on every node) the write still lands."""
    store.redis.script_flush()
    store.documents.write(DOC, '{"v": 2}', 300)
    assert store.documents.read(DOC)[0] == '{"v": 2}'


def test_one_fetcher_holds_the_lock_until_it_lets_go(store: Store) -> None:
    assert store.documents.lock(DOC, "me", 5000)
    assert not store.documents.lock(DOC, "you", 5000)
    assert not store.documents.unlock(DOC, "you")
    assert store.documents.unlock(DOC, "me")
    assert store.documents.lock(DOC, "you", 5000)


def test_a_forced_refetch_is_allowed_once_per_period(store: Store) -> None:
    assert store.documents.allow_forced(DOC, 60)
    assert not store.documents.allow_forced(DOC, 60)
