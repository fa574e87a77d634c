"""GET /metrics: Prometheus text for the holder of METRICS_TOKEN, 404 for anyone else.

Values live in the process's multiprocess directory and every app in this
test process shares them, so each test reads the counters before and after
and asserts on the difference.
"""

from __future__ import annotations

import re
import typing as t

import fakeredis
import pytest

from proxy import create_app
from proxy.config.settings import Settings
from tests.oauth_client import OAuthTestClient

TOKEN = "metrics-token-" + "x" * 24


@pytest.fixture
def app(settings: Settings, store_client: t.Any) -> t.Any:
    return create_app(settings.replace(metrics_token=TOKEN), redis_client=store_client)


def scrape(client: t.Any) -> str:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return t.cast(str, response.get_data(as_text=True))


def value(text: str, name: str, **labels: str) -> float:
    """The sample `name{labels...}` (labels matched as a subset), 0 if absent."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        sample, _, number = line.rpartition(" ")
        found = dict(re.findall(r'(\w+)="([^"]*)"', sample))
        if sample.split("{")[0] == name and all(
            found.get(k) == v for k, v in labels.items()
        ):
            total += float(number)
    return total


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-wrong-token-wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": TOKEN},
    ],
)
def test_without_the_token_metrics_is_a_404(
    client: t.Any, headers: dict[str, str]
) -> None:
    """No hint that /metrics exists: the same 404 as an unknown path."""
    response = client.get("/metrics", headers=headers)
    unknown = client.get("/no-such-path", headers=headers)
    assert response.status_code == 404
    assert response.get_json() == unknown.get_json()
    assert b"mcp_oauth_proxy" not in response.get_data()


def test_no_metrics_token_no_metrics(settings: Settings, fake_redis: t.Any) -> None:
    """METRICS_TOKEN unset: 404 whatever is presented."""
    client = create_app(settings, redis_client=fake_redis).test_client()
    response = client.get("/metrics", headers={"Authorization": "Bearer "})
    assert response.status_code == 404


def test_requests_are_counted_by_route_name_and_status(client: t.Any) -> None:
    before = scrape(client)
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    client.get("/some/random/path/1234")
    after = scrape(client)
    name = "mcp_oauth_proxy_http_requests_total"
    healthz = {"endpoint": "health.show_liveness", "method": "GET", "status": "200"}
    assert value(after, name, **healthz) - value(before, name, **healthz) == 3
    assert (
        value(after, name, endpoint="unmatched", status="404")
        - value(before, name, endpoint="unmatched", status="404")
        == 1
    )
    # The raw path never becomes a label.
    assert "random" not in after
    latency = "mcp_oauth_proxy_http_request_duration_seconds_count"
    grown = value(after, latency, endpoint="health.show_liveness") - value(
        before, latency, endpoint="health.show_liveness"
    )
    assert grown == 3


def test_a_refused_request_is_counted_with_its_route_method_and_final_status(
    client: t.Any,
) -> None:
    """The status an error handler wrote, under the route the request matched."""
    name = "mcp_oauth_proxy_http_requests_total"
    series = {"endpoint": "token.issue_token", "method": "POST", "status": "400"}
    before = scrape(client)
    answer = client.post("/oauth2/token", data={"grant_type": "nope"})
    assert answer.status_code == 400
    after = scrape(client)
    assert value(after, name, **series) - value(before, name, **series) == 1


def test_events_are_counted_with_known_reasons_only(app: t.Any, client: t.Any) -> None:
    """The sink counts by name, outcome and a reason from a closed set; a free
    reason (here a client-chosen string) is "other", and no field is a label."""
    events = app.extensions["proxy"].events
    before = scrape(client)
    events.emit("grant.revoked", client_id="client-abc", sub="alice", reason="reuse")
    events.emit("grant.revoked", client_id="client-abc", reason="https://evil/x?y")
    after = scrape(client)
    name = "mcp_oauth_proxy_events_total"
    for reason in ("reuse", "other"):
        labels = {"event": "grant.revoked", "reason": reason}
        assert value(after, name, **labels) - value(before, name, **labels) == 1
    assert "client-abc" not in after
    assert "alice" not in after
    assert "evil" not in after


def test_a_flow_is_counted_and_no_secret_reaches_the_metrics(
    client: t.Any, oauth: OAuthTestClient
) -> None:
    """A full login plus a replayed code: grant, replay, revocation counted;
    nothing the flow produced (code, tokens, state, ids) appears in /metrics."""
    before = scrape(client)
    client_id = oauth.register()["client_id"]
    flow = oauth.login(client_id)
    first = oauth.token(flow)
    assert first.status_code == 200
    replay = oauth.token(flow)
    assert replay.status_code == 400
    wrong_redirect, _ = oauth.authorize(client_id, redirect_uri="http://127.0.0.1:1/x")
    after = scrape(client)

    name = "mcp_oauth_proxy_events_total"
    for event in ("code.replayed", "grant.revoked", "redirect_uri.refused"):
        grown = value(after, name, event=event) - value(before, name, event=event)
        assert grown == 1, event
    token = "mcp_oauth_proxy_http_requests_total"
    ok = {"endpoint": "token.issue_token", "status": "200"}
    assert value(after, token, **ok) - value(before, token, **ok) == 1
    upstream = "mcp_oauth_proxy_upstream_requests_total"
    assert value(after, upstream, endpoint="token", outcome="ok") > value(
        before, upstream, endpoint="token", outcome="ok"
    )
    secrets = [
        flow.code,
        flow.verifier,
        client_id,
        t.cast(str, first.get_json()["access_token"]),
        t.cast(str, first.get_json()["refresh_token"]),
        flow.state or "",
        "alice",
    ]
    for secret in secrets:
        assert secret
        assert secret not in after, secret


def test_redis_outages_are_counted_by_cause(
    client: t.Any, fake_server: fakeredis.FakeServer
) -> None:
    before = scrape(client)
    fake_server.connected = False
    assert client.post("/oauth2/register", json={}).status_code in (400, 503)
    assert client.get("/readyz").status_code == 503
    fake_server.connected = True
    after = scrape(client)
    name = "mcp_oauth_proxy_redis_errors_total"
    assert value(after, name) - value(before, name) >= 1
