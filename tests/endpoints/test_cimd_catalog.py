"""Catalogued URL clients: TRUSTED_CLIENTS, the known-client mark, pinned copies.

The catalog (CLIENT_CATALOG_FILE) names a client whose CIMD URL is the local
test server's document; the document is served over real https with a test
CA, the app runs on the real Redis. A URL client's identity is verified (its
host vouches for it), a DCR registration with the same redirect URIs only
looks like it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import typing as t
from pathlib import Path

import pytest
import redis

from proxy import create_app
from proxy.config.client_documents import ClientDocuments
from proxy.config.settings import Settings
from tests.document_server import DocumentServer
from tests.document_server import Route
from tests.oauth_client import REDIRECT_URI
from tests.oauth_client import OAuthTestClient

PATH = "/oauth/agent/client.json"
NAME = "test-agent"
_KNOWN = re.compile(r'<p id="known-client"[^>]*data-verified="(\w+)"')


@pytest.fixture
def store_client(real_redis: redis.Redis) -> redis.Redis:
    return real_redis


def write_catalog(
    directory: Path, url: str, pinned: dict[str, t.Any] | None = None
) -> str:
    entry: dict[str, t.Any] = {
        "name": NAME,
        "display_name": "Test Agent",
        "registers_by": ["cimd", "dcr"],
        "cimd_urls": [url],
        "redirect_uris": [REDIRECT_URI],
    }
    if pinned is not None:
        entry["pinned_document"] = {
            "url": url,
            "reconstructed_on": "2026-12-06",
            "source": "tests",
            "document": pinned,
        }
    path = directory / "catalog.json"
    path.write_text(
        json.dumps({"format": 1, "updated": "2026-12-06", "clients": [entry]})
    )
    return str(path)


def make_oauth(
    settings: Settings, store_client: redis.Redis, catalog_file: str, **changes: t.Any
) -> OAuthTestClient:
    documents = ClientDocuments(allowed_private_hosts=frozenset({"127.0.0.1"}))
    app = create_app(
        dataclasses.replace(
            settings,
            client_documents=documents,
            client_catalog_file=catalog_file,
            **changes,
        ),
        redis_client=store_client,
    )
    return OAuthTestClient(app.test_client())


def _verified_mark(response: t.Any) -> str | None:
    found = _KNOWN.search(response.get_data(as_text=True))
    return found.group(1) if found else None


# -- TRUSTED_CLIENTS and the known-client mark ---------------------------------


def test_a_trusted_cimd_client_skips_consent_and_a_dcr_lookalike_does_not(
    settings: Settings,
    store_client: redis.Redis,
    document_server: DocumentServer,
    trust_test_ca: str,
    tmp_path: Path,
    idp_url: str,
) -> None:
    document = document_server.client_document(PATH, [REDIRECT_URI])
    url = document_server.serve_json(PATH, document)
    oauth = make_oauth(
        settings,
        store_client,
        write_catalog(tmp_path, url),
        trusted_clients=(NAME,),
    )
    flow, response = oauth.authorize(url)
    assert response.status_code == 302, response.get_data(as_text=True)
    assert response.headers["Location"].startswith(idp_url)
    # ... and the flow completes without a consent page.
    assert oauth.login(url).code

    lookalike = oauth.register(redirect_uris=[REDIRECT_URI])["client_id"]
    _, page = oauth.authorize(lookalike)
    assert page.status_code == 200
    assert 'name="csrf_token"' in page.get_data(as_text=True)
    assert _verified_mark(page) == "false"


def test_the_consent_page_marks_a_cimd_client_known_and_verified(
    settings: Settings,
    store_client: redis.Redis,
    document_server: DocumentServer,
    trust_test_ca: str,
    tmp_path: Path,
) -> None:
    document = document_server.client_document(PATH, [REDIRECT_URI])
    url = document_server.serve_json(PATH, document)
    oauth = make_oauth(settings, store_client, write_catalog(tmp_path, url))
    _, response = oauth.authorize(url)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert _verified_mark(response) == "true"
    assert "Known client: <strong>Test Agent</strong>" in page
    assert 'id="verified-host">127.0.0.1<' in page

    lookalike = oauth.register(redirect_uris=[REDIRECT_URI])["client_id"]
    _, other = oauth.authorize(lookalike)
    assert _verified_mark(other) == "false"
    assert 'id="verified-host"' not in other.get_data(as_text=True)


# -- the pinned fallback ----------------------------------------------------------


def test_a_refused_live_fetch_falls_back_to_the_pinned_copy(
    settings: Settings,
    store_client: redis.Redis,
    document_server: DocumentServer,
    trust_test_ca: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A vendor CDN answering 403 to a datacenter does not lock its users out."""
    url = document_server.url(PATH)
    pinned = document_server.client_document(
        PATH, [REDIRECT_URI], client_name="Pinned Agent"
    )
    document_server.routes[PATH] = Route(b"Forbidden", 403)
    oauth = make_oauth(settings, store_client, write_catalog(tmp_path, url, pinned))

    with caplog.at_level(logging.WARNING):
        _, response = oauth.authorize(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert "Pinned Agent" in response.get_data(as_text=True)
    assert document_server.hits[PATH] == 1
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and url in r.message
    ]
    assert any("pinned" in r.message for r in warnings), caplog.text
    # The whole flow works on the pinned copy, token endpoint included.
    flow = oauth.login(url)
    assert oauth.token(flow).status_code == 200


def test_a_working_live_fetch_wins_over_the_pinned_copy(
    settings: Settings,
    store_client: redis.Redis,
    document_server: DocumentServer,
    trust_test_ca: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    live = document_server.client_document(
        PATH, [REDIRECT_URI], client_name="Live Agent"
    )
    url = document_server.serve_json(PATH, live)
    pinned = document_server.client_document(
        PATH, [REDIRECT_URI], client_name="Pinned Agent"
    )
    oauth = make_oauth(settings, store_client, write_catalog(tmp_path, url, pinned))
    with caplog.at_level(logging.WARNING):
        _, response = oauth.authorize(url)
    page = response.get_data(as_text=True)
    assert "Live Agent" in page
    assert "Pinned Agent" not in page
    assert "pinned" not in caplog.text
