"""proxy/__init__.py: what the app factory hooks around every request."""

from __future__ import annotations

import typing as t

from proxy.store.documents import document_id

URL_CLIENT = "https://app.example/c.json"


def test_a_requests_primed_reads_end_with_the_request(app: t.Any) -> None:
    """A read primed in one request and never used is not handed to the next
    request on the same thread (sync workers serve them all on one)."""
    store = app.extensions["proxy"].store
    doc = document_id("client_metadata", URL_CLIENT)
    with app.test_request_context("/token"):
        store.read_document_client(URL_CLIENT, doc)  # primes "none, not disabled"
    store.documents.write(doc, '{"v": 1}', 60)
    store.disabled_clients.disable(URL_CLIENT, now=1_800_000_000, ttl=None)
    with app.test_request_context("/token"):
        assert store.documents.read(doc) == ('{"v": 1}', None)
        assert store.disabled_clients.is_disabled(URL_CLIENT)
