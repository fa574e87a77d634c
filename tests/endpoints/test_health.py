"""GET /healthz (liveness) and /readyz (the store answers and accepts writes).

The refusals are real: a private redis-server at maxmemory under noeviction,
and one that is a read-only replica.
"""

from __future__ import annotations

import typing as t
from collections.abc import Iterator

import fakeredis
import pytest
import redis

from proxy import create_app
from proxy.config.settings import Settings
from proxy.store.keys import READY_PROBE_TTL_SECONDS
from support.processes import ManagedProcess
from support.processes import start_redis

from ..e2e.conftest import require_redis_server
from ..redis_faults import FULL_MAXMEMORY_ARGS
from ..redis_faults import fill_to_maxmemory
from ..redis_faults import free_memory
from ._helpers import assert_json_error
from ._helpers import closed_port


def test_liveness_answers_without_the_store(
    client: t.Any, fake_server: fakeredis.FakeServer
) -> None:
    """/healthz says the process is up even when Redis is not."""
    fake_server.connected = False
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readiness_is_ok_with_the_store_up(client: t.Any) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["store"] == "up"


def test_readiness_is_503_with_the_store_down(
    client: t.Any, fake_server: fakeredis.FakeServer
) -> None:
    """/readyz answers 503 with Retry-After while Redis is unreachable."""
    fake_server.connected = False
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.get_json()["store"] == "down"


def test_readiness_recovers_with_the_store(
    client: t.Any, fake_server: fakeredis.FakeServer
) -> None:
    """The service recovers by itself once Redis answers again."""
    fake_server.connected = False
    assert client.get("/readyz").status_code == 503
    fake_server.connected = True
    assert client.get("/readyz").status_code == 200


def test_store_outage_at_an_oauth_endpoint_is_503_not_500(
    client: t.Any, fake_server: fakeredis.FakeServer
) -> None:
    """Redis down is 503 temporarily_unavailable with Retry-After."""
    fake_server.connected = False
    response = client.post(
        "/oauth2/register", json={"redirect_uris": ["https://a.example/cb"]}
    )
    assert_json_error(response, 503, "temporarily_unavailable")
    assert response.headers["Retry-After"]
    assert response.headers["Cache-Control"] == "no-store"


# -- a real Redis that answers PING but refuses writes ---------------------------------


@pytest.fixture(scope="module")
def full_redis_server() -> Iterator[ManagedProcess]:
    """A private redis-server with a small maxmemory and noeviction."""
    require_redis_server()
    proc = start_redis(extra_args=FULL_MAXMEMORY_ARGS)
    try:
        yield proc
    finally:
        proc.close()


@pytest.fixture(scope="module")
def read_only_redis_server() -> Iterator[ManagedProcess]:
    """A replica of a master that does not exist: it serves reads, refuses writes."""
    require_redis_server()
    proc = start_redis(extra_args=["--replicaof", "127.0.0.1", str(closed_port())])
    try:
        yield proc
    finally:
        proc.close()


def _app_on(url: str, settings: Settings) -> t.Any:
    return create_app(
        settings, redis_client=redis.Redis.from_url(url, decode_responses=True)
    )


def test_readiness_is_503_when_redis_is_full(
    full_redis_server: ManagedProcess, settings: Settings
) -> None:
    """At maxmemory under noeviction, PING works but /readyz is 503 out_of_memory;
    registration is 503 temporarily_unavailable, not a 500; freeing memory is
    enough to be ready again."""
    filler = redis.Redis.from_url(full_redis_server.url)
    client = _app_on(full_redis_server.url, settings).test_client()
    assert client.get("/readyz").status_code == 200
    fill_to_maxmemory(filler)
    try:
        assert filler.ping()
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.get_json() == {
            "status": "unavailable",
            "store": "refuses_writes",
            "cause": "out_of_memory",
        }
        assert response.headers["Retry-After"]
        assert response.headers["Cache-Control"] == "no-store"
        registered = client.post(
            "/oauth2/register", json={"redirect_uris": ["https://a.example/cb"]}
        )
        assert_json_error(registered, 503, "temporarily_unavailable")
        assert registered.headers["Retry-After"]
    finally:
        free_memory(filler)
    assert client.get("/readyz").status_code == 200
    registered = client.post(
        "/oauth2/register", json={"redirect_uris": ["https://a.example/cb"]}
    )
    assert registered.status_code == 201


def test_readiness_is_503_on_a_read_only_replica(
    read_only_redis_server: ManagedProcess, settings: Settings
) -> None:
    """A read-only replica answers PING; /readyz says read_only, writes are 503."""
    client = _app_on(read_only_redis_server.url, settings).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["cause"] == "read_only"
    assert read_only_redis_server.url not in response.get_data(as_text=True)
    registered = client.post(
        "/oauth2/register", json={"redirect_uris": ["https://a.example/cb"]}
    )
    assert_json_error(registered, 503, "temporarily_unavailable")


def test_readiness_write_probe_leaves_one_short_lived_key(
    client: t.Any, app: t.Any, store_client: redis.Redis
) -> None:
    """The probe writes one key under the prefix, with a TTL, however often."""
    for _ in range(3):
        assert client.get("/readyz").status_code == 200
    keys = list(store_client.scan_iter(match="*"))
    key = app.extensions["proxy"].store.keys.ready_probe()
    assert keys == [key]
    assert 0 < store_client.ttl(key) <= READY_PROBE_TTL_SECONDS


@pytest.mark.parametrize(
    ("message", "status"),
    [
        ("MISCONF Redis is configured to save RDB snapshots", 503),
        ("OOM command not allowed when used memory > 'maxmemory'.", 503),
        ("ERR unknown command 'FOO'", 500),
    ],
)
def test_a_refusing_store_is_503_and_our_own_mistake_500(
    client: t.Any, monkeypatch: pytest.MonkeyPatch, message: str, status: int
) -> None:
    """Redis refusing writes is retryable; a bad command of ours is a bug."""

    def refuse(*_: t.Any, **__: t.Any) -> None:
        raise redis.exceptions.ResponseError(message)

    monkeypatch.setattr("proxy.store.Store.create_client", refuse)
    response = client.post(
        "/oauth2/register", json={"redirect_uris": ["https://a.example/cb"]}
    )
    expected = "temporarily_unavailable" if status == 503 else "server_error"
    assert_json_error(response, status, expected)
    assert ("Retry-After" in response.headers) == (status == 503)


# -- the identity provider ----------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _upstream_app(
    settings: Settings, issuer: str, fake_redis: redis.Redis
) -> tuple[t.Any, _Clock]:
    """An app whose IdP is ``issuer``, its readiness on a clock the test moves."""
    from proxy.upstream.readiness import UpstreamReadiness

    app = create_app(settings.replace(upstream_issuer=issuer), redis_client=fake_redis)
    clock = _Clock()
    state = app.extensions["proxy"]
    state.upstream_readiness = UpstreamReadiness(
        state.upstream.check_discovery, first_wait=10, clock=clock
    )
    return app, clock


def _wait_for_verdict(client: t.Any, status: int) -> t.Any:
    """The re-check runs in the background: read /readyz until it has landed."""
    import time

    deadline = time.monotonic() + 10
    while True:
        response = client.get("/readyz")
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.02)


def test_readiness_is_503_while_the_idp_is_unreachable(
    settings: Settings, fake_redis: redis.Redis, httpserver: t.Any
) -> None:
    """Nothing listens at OAUTH_ISSUER: 503 discovery_unreachable; /healthz 200."""
    app, _ = _upstream_app(settings, f"http://127.0.0.1:{closed_port()}", fake_redis)
    client = app.test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["upstream"] == "discovery_unreachable"
    assert response.headers["Retry-After"]
    assert client.get("/healthz").status_code == 200


def test_readiness_follows_an_issuer_mismatch_and_its_fix(
    settings: Settings,
    fake_redis: redis.Redis,
    httpserver: t.Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The IdP names another issuer: 503 issuer_mismatch and a WARNING naming it;
    once it names the right one, /readyz is 200 again, at the next check."""
    from tests.upstream.standins import OIDCStandIn

    idp = OIDCStandIn(httpserver, issuer="https://other-issuer.example.com")
    app, clock = _upstream_app(settings, idp.base, fake_redis)
    client = app.test_client()
    with caplog.at_level("WARNING"):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["upstream"] == "issuer_mismatch"
    assert "issuer mismatch:" in caplog.text

    httpserver.clear()
    OIDCStandIn(httpserver)  # now the discovery document names its own URL
    # Within the interval the cached verdict stands: no request to the IdP.
    assert client.get("/readyz").status_code == 503
    clock.now += 61
    response = _wait_for_verdict(client, 200)
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "store": "up", "upstream": "up"}


def test_readiness_asks_the_idp_at_most_once_per_interval(
    settings: Settings, fake_redis: redis.Redis, httpserver: t.Any
) -> None:
    from tests.upstream.standins import OIDCStandIn

    idp = OIDCStandIn(httpserver)
    app, clock = _upstream_app(settings, idp.base, fake_redis)
    client = app.test_client()
    for _ in range(5):
        assert client.get("/readyz").status_code == 200
    discovery = [
        request
        for request, _ in httpserver.log
        if request.path.endswith("/.well-known/openid-configuration")
    ]
    assert len(discovery) == 1


def test_a_login_against_a_mismatched_issuer_says_so(
    settings: Settings,
    fake_redis: redis.Redis,
    httpserver: t.Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The authorization ends at the client with server_error and a description
    that names the issuer mismatch, not "unavailable"; the log says why."""
    from tests.oauth_client import OAuthTestClient
    from tests.oauth_client import query_of
    from tests.upstream.standins import OIDCStandIn

    idp = OIDCStandIn(httpserver, issuer="https://other-issuer.example.com")
    app, _ = _upstream_app(settings, idp.base, fake_redis)
    oauth = OAuthTestClient(app.test_client())
    client_id = oauth.register()["client_id"]
    with caplog.at_level("WARNING"):
        flow, response = oauth.authorize(client_id)
        if response.status_code == 200:
            response = oauth.consent(flow)
    assert response.status_code in (302, 303)
    query = query_of(response.headers["Location"])
    assert query["error"] == ["server_error"]
    assert "issuer mismatch" in query["error_description"][0]
    assert "unavailable" not in query["error_description"][0]
    assert "issuer mismatch:" in caplog.text
