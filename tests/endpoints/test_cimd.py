"""URL client ids (CIMD) at authorize, consent, token, revoke and in the metadata.

Documents are served over real https from 127.0.0.1 with a test CA (SSL_CERT_FILE)
and CIMD_ALLOWED_PRIVATE_HOSTS naming 127.0.0.1, as an operator's intranet
would; the app runs on the real Redis.
"""

from __future__ import annotations

import dataclasses
import json
import typing as t

import pytest
import redis

from proxy import create_app
from proxy.config.client_documents import ClientDocuments
from proxy.config.limits import Rate
from proxy.config.settings import Settings
from tests.document_server import DocumentServer
from tests.document_server import Route
from tests.oauth_client import REDIRECT_URI
from tests.oauth_client import OAuthTestClient
from tests.redis_round_trips import RoundTrips

from ._helpers import assert_json_error
from ._helpers import assert_no_store
from ._helpers import assert_page
from ._helpers import basic

PATH = "/oauth/client.json"
LOOPBACK_PORTLESS = "http://127.0.0.1/callback"


def cimd_settings(settings: Settings, **documents: t.Any) -> Settings:
    values: dict[str, t.Any] = {
        "allowed_private_hosts": frozenset({"127.0.0.1"}),
        "cache_min_seconds": 0,  # every request re-reads the document
        **documents,
    }
    return dataclasses.replace(settings, client_documents=ClientDocuments(**values))


@pytest.fixture
def store_client(real_redis: redis.Redis) -> redis.Redis:
    return real_redis


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return cimd_settings(settings)


@pytest.fixture
def app(settings: Settings, store_client: redis.Redis, trust_test_ca: str) -> t.Any:
    return create_app(settings, redis_client=store_client)


@pytest.fixture
def client_id(document_server: DocumentServer) -> str:
    """A CIMD client whose document lists a portless loopback redirect URI."""
    document = document_server.client_document(PATH, [LOOPBACK_PORTLESS])
    return document_server.serve_json(PATH, document)


def test_metadata_advertises_cimd_and_keeps_none(client: t.Any) -> None:
    """DISC-10, DISC-8: Claude uses CIMD only when both are present."""
    metadata = client.get("/.well-known/oauth-authorization-server").get_json()
    assert metadata["client_id_metadata_document_supported"] is True
    assert "none" in metadata["token_endpoint_auth_methods_supported"]


def test_metadata_omits_cimd_when_disabled(
    settings: Settings, store_client: redis.Redis
) -> None:
    app = create_app(cimd_settings(settings, enabled=False), redis_client=store_client)
    metadata = app.test_client().get("/.well-known/oauth-authorization-server")
    assert "client_id_metadata_document_supported" not in metadata.get_json()


def test_a_url_client_id_gets_the_consent_page_naming_its_host(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """CIMD-1, CIMD-11: the verified host next to the self-declared name."""
    flow, response = oauth.authorize(
        client_id, redirect_uri="http://127.0.0.1:53123/callback"
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    page = response.get_data(as_text=True)
    assert 'id="verified-host">127.0.0.1<' in page
    assert "Example Agent" in page
    assert 'id="redirect-host">127.0.0.1<' in page
    assert 'id="all-loopback-warning"' in page


def test_no_all_loopback_warning_for_a_web_client(
    oauth: OAuthTestClient, document_server: DocumentServer
) -> None:
    document = document_server.client_document(
        PATH, ["https://app.example.com/callback", LOOPBACK_PORTLESS]
    )
    url = document_server.serve_json(PATH, document)
    _, response = oauth.authorize(url, redirect_uri="https://app.example.com/callback")
    assert response.status_code == 200
    assert 'id="all-loopback-warning"' not in response.get_data(as_text=True)


def test_a_redirect_uri_not_in_the_document_is_a_page(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """CIMD-6: an unlisted redirect_uri is refused on a page, never redirected."""
    _, response = oauth.authorize(client_id, redirect_uri="http://127.0.0.1:5/other")
    assert_page(response)


def test_loopback_redirects_ignore_the_port(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """AUTHZ-5: Claude Code's document lists portless loopback URIs."""
    for port in (1234, 53123):
        _, response = oauth.authorize(
            client_id, redirect_uri=f"http://127.0.0.1:{port}/callback"
        )
        assert response.status_code == 200


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"status": 404}, "answered 404"),
        ({"client_id": "https://elsewhere.example/c.json"}, "client_id differs"),
        ({"client_secret": "s"}, "client_secret"),
        ({"token_endpoint_auth_method": "client_secret_basic"}, "none or private"),
        ({"redirect_uris": None}, "redirect_uris"),
    ],
)
def test_an_unusable_document_is_an_error_page_with_the_reason(
    oauth: OAuthTestClient,
    document_server: DocumentServer,
    change: dict[str, t.Any],
    reason: str,
) -> None:
    """CIMD-10, CIMD-4, CIMD-5: a page (no redirect) saying why."""
    status = change.pop("status", 200)
    document = {
        **document_server.client_document(PATH, [LOOPBACK_PORTLESS]),
        **change,
    }
    document = {k: v for k, v in document.items() if v is not None}
    url = document_server.serve_json(PATH, document, status=status)
    _, response = oauth.authorize(url, redirect_uri="http://127.0.0.1:5/callback")
    assert_page(response)
    assert reason in response.get_data(as_text=True)
    as_json = oauth.client.get(
        "/oauth2/authorize",
        query_string={"client_id": url, "response_type": "code"},
        headers={"Accept": "application/json"},
    )
    body = assert_json_error(as_json, 400, "invalid_client")
    assert reason in body["error_description"]


def test_a_redirecting_document_url_is_refused_and_the_target_gets_nothing(
    oauth: OAuthTestClient, document_server: DocumentServer
) -> None:
    """CIMD-3."""
    target = document_server.serve_json("/target.json", {})
    document_server.routes[PATH] = Route(b"", 302, {"Location": target})
    _, response = oauth.authorize(
        document_server.url(PATH), redirect_uri="http://127.0.0.1:5/callback"
    )
    assert_page(response)
    assert document_server.hits["/target.json"] == 0


@pytest.mark.parametrize(
    "url",
    ["https://127.0.0.1:1", "https://u:p@127.0.0.1:1/c.json", "https://x.test/c?q=1"],
)
def test_a_malformed_client_id_url_is_a_page(oauth: OAuthTestClient, url: str) -> None:
    """CIMD-2."""
    _, response = oauth.authorize(url)
    assert_page(response)


def test_the_domain_policy_refuses_before_fetching(
    settings: Settings,
    store_client: redis.Redis,
    document_server: DocumentServer,
    client_id: str,
) -> None:
    """CIMD-14: a denied domain is a page, and nothing is fetched."""
    app = create_app(
        cimd_settings(settings, denied_domains=("127.0.0.1",)),
        redis_client=store_client,
    )
    oauth = OAuthTestClient(app.test_client())
    _, response = oauth.authorize(client_id, redirect_uri=REDIRECT_URI)
    assert_page(response)
    assert "does not accept clients from 127.0.0.1" in response.get_data(as_text=True)
    assert document_server.hits[PATH] == 0


def test_with_cimd_disabled_a_url_client_is_unknown(
    settings: Settings,
    store_client: redis.Redis,
    document_server: DocumentServer,
    client_id: str,
) -> None:
    app = create_app(cimd_settings(settings, enabled=False), redis_client=store_client)
    _, response = OAuthTestClient(app.test_client()).authorize(client_id)
    assert_page(response)
    assert document_server.hits[PATH] == 0


def test_a_cimd_client_completes_the_flow_as_a_public_client(
    oauth: OAuthTestClient,
    client_id: str,
    real_redis: redis.Redis,
    settings: Settings,
) -> None:
    """CIMD-12: URL client_id, PKCE, no secret; then refresh. Nothing registered."""
    flow = oauth.login(client_id, redirect_uri="http://127.0.0.1:5555/callback")
    response = oauth.token(flow)
    assert response.status_code == 200, response.get_data(as_text=True)
    tokens = response.get_json()
    refreshed = oauth.refresh(client_id, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_data(as_text=True)
    assert not real_redis.keys(settings.key_prefix + "client:*")
    assert not real_redis.keys(settings.key_prefix + "clients")


def test_a_secret_from_a_cimd_client_is_refused(
    oauth: OAuthTestClient, client_id: str
) -> None:
    flow = oauth.login(client_id, redirect_uri="http://127.0.0.1:5555/callback")
    response = oauth.client.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": flow.code,
            "code_verifier": flow.verifier,
            "redirect_uri": flow.redirect_uri,
        },
        headers=basic(client_id, "guess"),
    )
    assert_json_error(response, 401, "invalid_client")


def test_an_unusable_document_at_the_token_endpoint_is_invalid_client(
    settings: Settings,
    store_client: redis.Redis,
    client_id: str,
    document_server: DocumentServer,
    trust_test_ca: str,
) -> None:
    # No stale copy to fall back on: the failure itself must show.
    app = create_app(
        cimd_settings(settings, stale_if_error_seconds=0), redis_client=store_client
    )
    oauth = OAuthTestClient(app.test_client())
    flow = oauth.login(client_id, redirect_uri="http://127.0.0.1:5555/callback")
    document_server.routes[PATH].status = 500
    response = oauth.token(flow)
    body = assert_json_error(response, 401, "invalid_client")
    assert_no_store(response)
    assert "answered 500" in body["error_description"]
    response = oauth.client.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": "x.y"},
        headers=basic(client_id, ""),
    )
    assert_json_error(response, 401, "invalid_client")
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_revoking_one_users_grant_leaves_the_others(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """Revocation is per grant, never every user of one document's client."""
    redirect = "http://127.0.0.1:5555/callback"
    grants = []
    for user in ("alice@example.com", "bob@example.com"):
        flow = oauth.login(client_id, user=user, redirect_uri=redirect)
        grants.append(oauth.token(flow).get_json())
    response = oauth.client.post(
        "/oauth2/revoke",
        data={"token": grants[0]["refresh_token"], "client_id": client_id},
    )
    assert response.status_code == 200
    assert oauth.refresh(client_id, grants[0]["refresh_token"]).status_code == 400
    assert oauth.refresh(client_id, grants[1]["refresh_token"]).status_code == 200


def test_changed_redirect_uris_void_remembered_consent(
    oauth: OAuthTestClient, document_server: DocumentServer, client_id: str
) -> None:
    """CIMD-16: consent given to one document does not carry over to another."""
    redirect = "http://127.0.0.1:5555/callback"
    flow, response = oauth.authorize(client_id, redirect_uri=redirect)
    assert response.status_code == 200
    assert oauth.consent(flow).status_code == 303
    _, again = oauth.authorize(client_id, redirect_uri=redirect)
    assert again.status_code == 302  # remembered: straight upstream
    document = document_server.client_document(
        PATH, [LOOPBACK_PORTLESS, "https://new.example.com/cb"]
    )
    document_server.serve_json(PATH, document)
    _, changed = oauth.authorize(client_id, redirect_uri=redirect)
    assert changed.status_code == 200  # asked again


def test_dcr_client_ids_never_look_like_urls(oauth: OAuthTestClient) -> None:
    """DCR-16: generated ids cannot collide with CIMD URLs."""
    for _ in range(5):
        assert not oauth.register()["client_id"].lower().startswith("https://")


def _authorize_from(client: t.Any, url: str, ip: str) -> t.Any:
    return client.get(
        "/oauth2/authorize",
        query_string={
            "response_type": "code",
            "client_id": url,
            "redirect_uri": "http://127.0.0.1:5/callback",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
        },
        environ_base={"REMOTE_ADDR": ip},
    )


def test_fetches_an_address_causes_are_limited_and_cached_ones_are_not(
    settings: Settings,
    store_client: redis.Redis,
    document_server: DocumentServer,
    trust_test_ca: str,
) -> None:
    """RATE-4: distinct uncached URL client ids from one IP run out; a cached
    document, and other IPs, are unaffected; /token answers invalid_client."""
    limited = cimd_settings(
        settings,
        cache_min_seconds=300,
        fetches_per_ip=Rate(2, 60),
        fetches_per_host=Rate(100, 60),
    )
    client = create_app(limited, redis_client=store_client).test_client()
    urls = []
    for n in range(4):
        path = f"/apps/{n}/client.json"
        document = document_server.client_document(path, [LOOPBACK_PORTLESS])
        urls.append(document_server.serve_json(path, document))
    for url in urls[:2]:
        assert _authorize_from(client, url, "198.51.100.1").status_code == 200
    refused = _authorize_from(client, urls[2], "198.51.100.1")
    assert_page(refused)
    assert "too many document fetches from your address" in refused.get_data(
        as_text=True
    )
    token = client.post(
        "/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": "x",
            "client_id": urls[3],
        },
        environ_base={"REMOTE_ADDR": "198.51.100.1"},
    )
    assert_json_error(token, 401, "invalid_client")
    assert document_server.hits["/apps/2/client.json"] == 0
    assert document_server.hits["/apps/3/client.json"] == 0
    # Cached: served to the same address with its budget spent.
    assert _authorize_from(client, urls[0], "198.51.100.1").status_code == 200
    # Another address pays for its own fetch.
    assert _authorize_from(client, urls[2], "198.51.100.2").status_code == 200


def test_fetches_for_one_host_are_limited_whoever_asks(
    settings: Settings,
    store_client: redis.Redis,
    document_server: DocumentServer,
    trust_test_ca: str,
) -> None:
    """RATE-4: many IPs cannot make the proxy hammer one host."""
    limited = cimd_settings(settings, fetches_per_ip=None, fetches_per_host=Rate(2, 60))
    client = create_app(limited, redis_client=store_client).test_client()
    statuses = []
    for n in range(3):
        path = f"/apps/{n}/client.json"
        document = document_server.client_document(path, [LOOPBACK_PORTLESS])
        url = document_server.serve_json(path, document)
        statuses.append(_authorize_from(client, url, f"198.51.100.{n}"))
    assert [r.status_code for r in statuses] == [200, 200, 400]
    assert "too many document fetches for 127.0.0.1, try again in" in statuses[
        2
    ].get_data(as_text=True)
    assert document_server.hits["/apps/2/client.json"] == 0


def _consent_skipped(response: t.Any) -> bool:
    return response.status_code == 302 and "/authorize" in response.headers["Location"]


@pytest.mark.parametrize(
    ("redirect_uri", "skipped"),
    [
        # The document's own host vouches for a redirect URI on it.
        ("https://127.0.0.1/callback", True),
        # Any document can list someone else's URI: that proves nothing.
        ("https://chatgpt.com/connector_platform_oauth_redirect", False),
        # The catalog pairs this client's document with this URI.
        ("https://agent.example/callback", True),
    ],
)
def test_trusted_redirect_uris_count_for_a_url_client_only_when_vouched_for(
    settings: Settings,
    store_client: redis.Redis,
    document_server: DocumentServer,
    trust_test_ca: str,
    tmp_path: t.Any,
    redirect_uri: str,
    skipped: bool,
) -> None:
    """J15: TRUSTED_REDIRECT_URIS skips consent for a CIMD client whose
    redirect URI is on its document's host, or catalogued with its URL."""
    catalog = {
        "format": 1,
        "updated": "2026-12-06",
        "clients": [
            {
                "name": "agent",
                "display_name": "Agent",
                "registers_by": ["cimd"],
                "cimd_urls": [f"https://127.0.0.1:*{PATH}"],
                "redirect_uris": ["https://agent.example/callback"],
            }
        ],
    }
    catalog_file = tmp_path / "catalog.json"
    catalog_file.write_text(json.dumps(catalog))
    trusted = frozenset(
        {
            "https://127.0.0.1/callback",
            "https://chatgpt.com/connector_platform_oauth_redirect",
            "https://agent.example/callback",
        }
    )
    app = create_app(
        cimd_settings(settings).replace(
            trusted_redirect_uris=trusted, client_catalog_file=str(catalog_file)
        ),
        redis_client=store_client,
    )
    oauth = OAuthTestClient(app.test_client())
    document = document_server.client_document(PATH, [redirect_uri])
    url = document_server.serve_json(PATH, document)
    _, response = oauth.authorize(url, redirect_uri=redirect_uri)
    assert response.status_code in (200, 302), response.get_data(as_text=True)
    assert _consent_skipped(response) is skipped


def _token_round_trips(
    oauth: OAuthTestClient, trips: RoundTrips, client_id: str
) -> tuple[int, int]:
    flow = oauth.login(client_id, redirect_uri="http://127.0.0.1:5555/callback")
    code_trips, response = trips.of(lambda: oauth.token(flow))
    assert response.status_code == 200, response.get_data(as_text=True)
    refresh_token = response.get_json()["refresh_token"]
    refresh_trips, refreshed = trips.of(lambda: oauth.refresh(client_id, refresh_token))
    assert refreshed.status_code == 200, refreshed.get_data(as_text=True)
    return code_trips, refresh_trips


def test_a_cached_document_costs_the_token_endpoint_no_extra_round_trip(
    settings: Settings,
    store_client: redis.Redis,
    client_id: str,
    monkeypatch: pytest.MonkeyPatch,
    trust_test_ca: str,
) -> None:
    """The first pipeline reads the cached document where a DCR client's
    record would be: code exchange and refresh cost what they cost for DCR."""
    cached = cimd_settings(settings, cache_min_seconds=300)
    app = create_app(cached.replace(trace_ttl_seconds=0), redis_client=store_client)
    oauth = OAuthTestClient(app.test_client())
    trips = RoundTrips(monkeypatch)
    _token_round_trips(oauth, trips, client_id)  # warm: document, scripts, keys
    dcr_id = oauth.register(redirect_uris=["http://127.0.0.1:5555/callback"])[
        "client_id"
    ]
    _token_round_trips(oauth, trips, dcr_id)
    assert _token_round_trips(oauth, trips, client_id) == _token_round_trips(
        oauth, trips, dcr_id
    )
