"""A URL client's (CIMD) consent page in a real headless Chromium.

The proxy fetches the client's document over real https from 127.0.0.1 (test
CA through SSL_CERT_FILE, CIMD_ALLOWED_PRIVATE_HOSTS), and the catalog
(CLIENT_CATALOG_FILE) names that document's URL; the browser sees the
verified host, the warning that every redirect URI is loopback, and the
known-client mark, then approves and carries a code back to the client.
"""

from __future__ import annotations

import dataclasses
import json
import typing as t
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from proxy import create_app
from proxy.config.client_documents import ClientDocuments
from proxy.config.settings import Settings
from tests.document_server import DocumentServer

from .conftest import LiveProxy
from .conftest import Site
from .conftest import _Deferred
from .conftest import serve
from .test_consent_page import HTTP_TIMEOUT_SECONDS
from .test_consent_page import USER
from .test_consent_page import authorization
from .test_consent_page import browser  # noqa: F401 - fixture
from .test_consent_page import new_context  # noqa: F401 - fixture
from .test_consent_page import page  # noqa: F401 - fixture
from .test_consent_page import pytestmark  # noqa: F401 - skip without Chromium

if t.TYPE_CHECKING:
    from playwright.sync_api import Page

PATH = "/oauth/browser-agent.json"


@pytest.fixture
def cimd_proxy(
    settings: Settings,
    store_client: redis.Redis,
    trust_test_ca: str,
    document_server: DocumentServer,
    tmp_path: Path,
) -> Iterator[LiveProxy]:
    """The live proxy, admitting URL clients on 127.0.0.1 and knowing this one."""
    catalog = tmp_path / "catalog.json"
    entry = {
        "name": "browser-agent",
        "display_name": "Browser Agent",
        "registers_by": ["cimd", "dcr"],
        "cimd_urls": [document_server.url(PATH)],
        "redirect_uris": ["http://127.0.0.1:*/callback"],
    }
    catalog.write_text(
        json.dumps({"format": 1, "updated": "2026-12-06", "clients": [entry]})
    )
    deferred = _Deferred()
    with serve(deferred) as port:
        url = f"http://127.0.0.1:{port}"
        live = dataclasses.replace(
            settings,
            public_url=url,
            resource=url + "/mcp",
            client_documents=ClientDocuments(
                allowed_private_hosts=frozenset({"127.0.0.1"})
            ),
            client_catalog_file=str(catalog),
        )
        deferred.app = create_app(live, redis_client=store_client)
        yield LiveProxy(url, live)


def test_a_cimd_client_shows_its_verified_host_and_the_loopback_warning(
    page: Page,  # noqa: F811 - the imported fixture
    cimd_proxy: LiveProxy,
    client_site: Site,
    document_server: DocumentServer,
    idp_url: str,
) -> None:
    redirect_uri = client_site.url + "/callback"
    document = document_server.client_document(
        PATH, [redirect_uri], client_name="Agent In A Browser"
    )
    client_id = document_server.serve_json(PATH, document)
    flow = authorization(cimd_proxy, client_id, redirect_uri)

    response = page.goto(flow.url)
    assert response is not None
    assert response.status == 200
    assert page.locator("#client-name").inner_text() == "Agent In A Browser"
    assert page.locator("#verified-host").inner_text() == "127.0.0.1"
    assert page.locator("#all-loopback-warning").is_visible()
    assert page.locator("#loopback-warning").is_visible()
    known = page.locator("#known-client")
    assert known.is_visible()
    assert known.get_attribute("data-verified") == "true"
    assert "Browser Agent" in known.inner_text()

    page.locator("#approve").click()
    page.wait_for_url(f"{idp_url}/**")
    page.locator("input[name=sub]").fill(USER)
    page.locator("input[name=sub]").press("Enter")
    page.wait_for_url(f"{client_site.url}/callback?**")
    [query] = client_site.queries("/callback")
    token = requests.post(
        cimd_proxy.url + "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "code_verifier": flow.verifier,
            "client_id": client_id,
            "redirect_uri": redirect_uri,
        },
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    assert token.status_code == 200, token.text


def test_a_dcr_lookalike_of_a_url_client_is_marked_unverified(
    page: Page,  # noqa: F811 - the imported fixture
    cimd_proxy: LiveProxy,
    client_site: Site,
) -> None:
    """A registration carries no verified host, whatever it calls itself."""
    redirect_uri = client_site.url + "/callback"
    response = requests.post(
        cimd_proxy.url + "/oauth2/register",
        json={
            "client_name": "Browser Agent",
            "redirect_uris": [redirect_uri],
            "token_endpoint_auth_method": "none",
        },
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    assert response.status_code == 201, response.text
    flow = authorization(cimd_proxy, response.json()["client_id"], redirect_uri)
    page.goto(flow.url)
    assert page.locator("#approve").is_visible()
    assert page.locator("#verified-host").count() == 0
    known = page.locator("#known-client")
    assert known.is_visible()
    assert known.get_attribute("data-verified") == "false"
    assert "not verified" in known.inner_text()
