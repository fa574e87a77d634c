"""The flow trace on a real Redis: each failure class names its failed step."""

from __future__ import annotations

import io
import json
import re
import typing as t
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
import redis
import redis.connection

from proxy import create_app
from proxy.cli import trace as trace_cli
from proxy.observability import trace as trace_sink
from proxy.observability.events import current_trace
from proxy.observability.trace import is_trace_id
from proxy.store import traces as trace_store
from proxy.store.keys import TRACE_INDEX_MAX
from proxy.store.keys import TRACE_MAX_STEPS
from tests.endpoints._helpers import closed_port
from tests.oauth_client import Flow
from tests.oauth_client import OAuthTestClient
from tests.oauth_client import query_of
from tests.redis_round_trips import RoundTrips
from tests.upstream.standins import OIDCStandIn

if t.TYPE_CHECKING:
    from proxy.config.settings import Settings

HTML = {"Accept": "text/html"}
_PAGE_TRACE = re.compile(r"trace id: ([0-9a-f]{16})")


@pytest.fixture
def store_client(real_redis: redis.Redis) -> redis.Redis:
    return real_redis


def _flush(app: t.Any) -> None:
    sink = app.extensions["proxy"].trace
    assert sink is not None
    sink.flush()


def _steps(app: t.Any, trace_id: str) -> list[dict[str, t.Any]]:
    _flush(app)
    records = app.extensions["proxy"].store.traces
    return [json.loads(s) for s in records.steps([trace_id]).get(trace_id, [])]


def _only_trace(app: t.Any) -> str:
    _flush(app)
    ids = app.extensions["proxy"].store.traces.newest(None, None, 10)
    assert len(ids) == 1, ids
    return str(ids[0])


def _failed(steps: list[dict[str, t.Any]]) -> dict[str, t.Any]:
    failures = [s for s in steps if s["outcome"] in ("error", "refused")]
    assert failures, [s["step"] for s in steps]
    return failures[0]


def _cli(app: t.Any, real_redis: redis.Redis, *argv: str) -> tuple[int, str]:
    _flush(app)
    out = io.StringIO()
    prefix = app.extensions["proxy"].settings.key_prefix
    code = trace_cli.main(
        list(argv), {"REDIS_KEY_PREFIX": prefix}, out, redis_client=real_redis
    )
    return code, out.getvalue()


def _approved(oauth: OAuthTestClient, client_id: str) -> Flow:
    flow, response = oauth.authorize(client_id)
    assert response.status_code == 200
    assert oauth.consent(flow).status_code == 303
    return flow


# -- one trace per failure class ------------------------------------------------


def test_wrong_redirect_names_authorize_and_the_page_shows_the_trace_id(
    app: t.Any, client: t.Any, oauth: OAuthTestClient
) -> None:
    client_id = oauth.register()["client_id"]
    response = client.get(
        "/oauth2/authorize",
        query_string={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": "http://127.0.0.1:5555/elsewhere",
            "code_challenge": "x" * 43,
            "code_challenge_method": "S256",
        },
        headers=HTML,
    )
    assert response.status_code == 400
    assert "Location" not in response.headers
    match = _PAGE_TRACE.search(response.get_data(as_text=True))
    assert match, response.get_data(as_text=True)
    failed = _failed(_steps(app, match.group(1)))
    assert failed["step"] == "authorize.refused"
    assert failed["client_id"] == client_id
    assert failed["redirect_uri"] == "http://127.0.0.1:5555/elsewhere"
    assert "redirect" in failed["reason"]


def test_pkce_mismatch_names_the_token_step_after_a_full_front_channel(
    app: t.Any, oauth: OAuthTestClient
) -> None:
    client_id = oauth.register()["client_id"]
    flow = oauth.login(client_id)
    response = oauth.token(flow, code_verifier="w" * 43)
    assert response.status_code == 400
    steps = _steps(app, _only_trace(app))
    names = [s["step"] for s in steps]
    assert names[:8] == [
        "authorize.received",
        "consent.shown",
        "consent.approved",
        "upstream.redirected",
        "callback.received",
        "login.succeeded",
        "grant.created",
        "token.refused",
    ]
    failed = _failed(steps)
    assert (failed["step"], failed["reason"]) == ("token.refused", "pkce_mismatch")
    assert failed["grant_type"] == "authorization_code"


def test_idp_denial_at_the_real_mock_is_traced_through_the_browser_cookie(
    app: t.Any, oauth: OAuthTestClient
) -> None:
    """oidc-provider-mock's deny drops `state`: the trace cookie still names it."""
    client_id = oauth.register()["client_id"]
    flow = _approved(oauth, client_id)
    denied = oauth.idp.post(
        flow.upstream_url, data={"action": "deny"}, allow_redirects=False
    )
    parts = urlsplit(denied.headers["Location"])
    page = oauth.client.get(parts.path + "?" + parts.query, headers=HTML)
    assert page.status_code == 400
    match = _PAGE_TRACE.search(page.get_data(as_text=True))
    assert match, page.get_data(as_text=True)
    assert match.group(1) == _only_trace(app)
    failed = _failed(_steps(app, match.group(1)))
    assert failed["step"] == "login.refused"
    assert failed["upstream_error"] == "access_denied"


def test_idp_error_with_state_is_passed_on_with_the_trace_id(
    app: t.Any, oauth: OAuthTestClient
) -> None:
    """J13: the error redirect carries trace_id and a description suffix."""
    client_id = oauth.register()["client_id"]
    flow = _approved(oauth, client_id)
    proxy_state = query_of(flow.upstream_url)["state"][0]
    response = oauth.callback(
        flow,
        "/oauth2/callback?"
        + urlencode(
            {
                "error": "access_denied",
                "error_description": "User said no",
                "state": proxy_state,
            }
        ),
    )
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["error"] == ["access_denied"]
    trace_id = query["trace_id"][0]
    assert trace_id == _only_trace(app)
    assert f"trace id: {trace_id}" in query["error_description"][0]
    received = next(
        s for s in _steps(app, trace_id) if s["step"] == "callback.received"
    )
    assert received["outcome"] == "error"
    assert received["upstream_error"] == "access_denied"
    assert received["upstream_error_description"] == "User said no"


def test_idp_down_names_the_upstream_redirect(
    settings: Settings, real_redis: redis.Redis
) -> None:
    down = settings.replace(upstream_issuer=f"http://127.0.0.1:{closed_port()}")
    app = create_app(down, redis_client=real_redis)
    oauth = OAuthTestClient(app.test_client())
    client_id = oauth.register()["client_id"]
    flow, _ = oauth.authorize(client_id)
    response = oauth.consent(flow)
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["error"] == ["temporarily_unavailable"]
    steps = _steps(app, query["trace_id"][0])
    failed = _failed(steps)
    assert failed["step"] == "upstream.redirected"
    assert failed["reason"] == "upstream_unavailable"
    assert "openid-configuration" in failed["detail"]


@pytest.fixture
def wrong_issuer_idp(httpserver: t.Any) -> str:
    """A discovery document that names another issuer."""
    return str(OIDCStandIn(httpserver, issuer="https://someone-else.example").base)


def test_issuer_mismatch_at_discovery_names_it(
    settings: Settings, real_redis: redis.Redis, wrong_issuer_idp: str
) -> None:
    app = create_app(
        settings.replace(upstream_issuer=wrong_issuer_idp), redis_client=real_redis
    )
    oauth = OAuthTestClient(app.test_client())
    flow, _ = oauth.authorize(oauth.register()["client_id"])
    response = oauth.consent(flow)
    trace_id = parse_qs(urlsplit(response.headers["Location"]).query)["trace_id"][0]
    failed = _failed(_steps(app, trace_id))
    assert failed["step"] == "upstream.redirected"
    assert "issuer" in failed["detail"]
    assert "someone-else.example" in failed["detail"]


def test_issuer_mismatch_at_the_callback_names_it(
    app: t.Any, oauth: OAuthTestClient
) -> None:
    """RFC 9207: a callback whose iss is another issuer's (a mix-up)."""
    flow = _approved(oauth, oauth.register()["client_id"])
    callback = oauth.upstream_login(flow)
    query = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
    query["iss"] = "https://someone-else.example"
    response = oauth.callback(flow, "/oauth2/callback?" + urlencode(query))
    assert response.status_code == 302
    failed = _failed(_steps(app, _only_trace(app)))
    assert (failed["step"], failed["reason"]) == (
        "login.refused",
        "upstream_iss_mismatch",
    )


def test_refresh_reuse_names_the_refresh(
    settings: Settings, real_redis: redis.Redis
) -> None:
    app = create_app(settings.replace(refresh_grace_seconds=0), redis_client=real_redis)
    oauth = OAuthTestClient(app.test_client())
    client_id, body = oauth.tokens()
    first = body["refresh_token"]
    assert oauth.refresh(client_id, first).status_code == 200
    assert oauth.refresh(client_id, first).status_code == 400
    steps = _steps(app, _only_trace(app))
    names = [s["step"] for s in steps]
    assert "code.redeemed" in names
    assert "refresh.rotated" in names
    assert names.index("refresh.reuse_detected") < names.index("token.refused")
    assert _failed(steps)["step"] == "refresh.reuse_detected"
    [refused] = [s for s in steps if s["step"] == "token.refused"]
    assert (refused["reason"], refused["grant_type"]) == ("rt_reused", "refresh_token")


# -- the CLI --------------------------------------------------------------------


def test_cli_prints_one_step_per_line_by_client_user_last_and_id(
    app: t.Any, oauth: OAuthTestClient, real_redis: redis.Redis
) -> None:
    client_id = oauth.register()["client_id"]
    flow = oauth.login(client_id, user="carol@example.com")
    oauth.token(flow, code_verifier="w" * 43)
    trace_id = _only_trace(app)
    code, by_client = _cli(app, real_redis, "--client", client_id)
    assert code == 0
    assert by_client.startswith(f"trace {trace_id}  client={client_id}")
    lines = by_client.splitlines()
    step_lines = [line for line in lines if line.startswith("  2")]
    assert len(step_lines) == len(_steps(app, trace_id))
    refused = next(line for line in step_lines if "token.refused" in line)
    assert re.search(
        r"T\d\d:\d\d:\d\d\.\d{3}Z  token\.refused +(ERROR|REFUSED) .*reason=", refused
    )
    assert "  => failed at token.refused: pkce_mismatch" in lines
    for argv in (["--user", "carol@example.com"], ["--last", "5"], ["--id", trace_id]):
        assert _cli(app, real_redis, *argv) == (0, by_client)
    assert _cli(app, real_redis, "--user", "nobody")[0] == 1
    assert _cli(app, real_redis, "--id", "not-a-trace")[0] == 2


def test_python_m_proxy_trace_dispatches_to_the_cli(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from proxy.cli import demo

    seen: list[list[str]] = []
    monkeypatch.setattr(
        trace_cli, "main", lambda argv, env, out: seen.append(argv) or 7
    )
    assert demo.main(["trace", "--last", "3"]) == 7
    assert seen == [["--last", "3"]]


# -- caps and TTL ---------------------------------------------------------------


def test_a_trace_keeps_its_newest_steps_with_the_ttl(
    settings: Settings, real_redis: redis.Redis
) -> None:
    app = create_app(settings.replace(trace_ttl_seconds=600), redis_client=real_redis)
    events = app.extensions["proxy"].events
    trace_id = "0123456789abcdef"
    for n in range(TRACE_MAX_STEPS + 10):
        events.emit("refresh.rotated", trace_id=trace_id, client_id="c", n=n)
    steps = _steps(app, trace_id)
    assert len(steps) == TRACE_MAX_STEPS
    assert steps[-1]["n"] == TRACE_MAX_STEPS + 9
    keys = app.extensions["proxy"].store.keys
    assert 0 < real_redis.ttl(keys.trace(trace_id)) <= 600
    assert 0 < real_redis.ttl(keys.trace_recent()) <= 600
    index = keys.trace_index("client", trace_store.subject_hash("c"))
    assert 0 < real_redis.ttl(index) <= 600


def test_indexes_keep_only_the_newest_traces(
    settings: Settings, real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trace_store, "TRACE_RECENT_MAX", 7)
    app = create_app(settings, redis_client=real_redis)
    events = app.extensions["proxy"].events
    ids = [f"{n:016x}" for n in range(TRACE_INDEX_MAX + 5)]
    for trace_id in ids:
        events.emit("login.succeeded", trace_id=trace_id, client_id="c", sub="u")
        _flush(app)  # one flush each: distinct first-seen times
    traces = app.extensions["proxy"].store.traces
    assert len(traces.newest("client", "c", 1000)) == TRACE_INDEX_MAX
    assert traces.newest("user", "u", 3) == ids[-1:-4:-1]
    assert traces.newest(None, None, 1000) == ids[-1:-8:-1]


def test_trace_ttl_zero_turns_traces_off_but_not_the_trace_id(
    settings: Settings, real_redis: redis.Redis
) -> None:
    app = create_app(settings.replace(trace_ttl_seconds=0), redis_client=real_redis)
    assert app.extensions["proxy"].trace is None
    oauth = OAuthTestClient(app.test_client())
    flow, _ = oauth.authorize(oauth.register()["client_id"])
    response = oauth.consent(flow, action="deny")
    assert is_trace_id(
        parse_qs(urlsplit(response.headers["Location"]).query)["trace_id"][0]
    )
    assert not real_redis.keys(settings.key_prefix + "trace*")


def test_events_without_a_trace_id_are_not_written(
    app: t.Any, real_redis: redis.Redis
) -> None:
    current_trace.set(None)
    app.extensions["proxy"].events.emit("client.registered", client_id="c")
    _flush(app)
    assert not real_redis.keys("*trace*")


# -- nothing secret -------------------------------------------------------------


def test_a_whole_flow_leaves_no_secret_in_its_trace(
    app: t.Any, oauth: OAuthTestClient, real_redis: redis.Redis
) -> None:
    registration = oauth.register(token_endpoint_auth_method="client_secret_post")
    client_id, secret = registration["client_id"], registration["client_secret"]
    flow, _ = oauth.authorize(client_id)
    oauth.consent(flow)
    upstream_query = query_of(flow.upstream_url)
    callback = oauth.upstream_login(flow)
    upstream_code = query_of(callback)["code"][0]
    oauth.callback(flow)
    tokens = oauth.token(flow, client_secret=secret).get_json()
    refreshed = oauth.refresh(
        client_id, tokens["refresh_token"], client_secret=secret
    ).get_json()
    cookies = [c.value for c in oauth.client._cookies.values()]
    secrets = [
        secret,
        flow.code,
        flow.verifier,
        flow.code.split(".", 1)[1],
        upstream_code,
        upstream_query["state"][0],
        upstream_query["code_challenge"][0],
        upstream_query["nonce"][0],
        "client-state",
        tokens["access_token"],
        tokens["refresh_token"],
        refreshed["access_token"],
        refreshed["refresh_token"],
        *cookies,
    ]
    _flush(app)
    dump = "\n".join(
        json.dumps(
            real_redis.lrange(key, 0, -1)
            if real_redis.type(key) == "list"
            else real_redis.zrange(key, 0, -1)
        )
        for key in real_redis.keys(
            app.extensions["proxy"].settings.key_prefix + "trace*"
        )
    )
    assert "refresh.rotated" in dump  # the trace is there
    _, printed = _cli(app, real_redis, "--last", "5")
    for value in secrets:
        assert value
        assert value not in dump, value
        assert value not in printed, value


# -- no extra round trip on the token and gateway paths ---------------------------


class _Counter(RoundTrips):
    """Round trips of the request itself: the flusher's batches are not."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(trace_sink._FLUSHER, "flush_all", lambda: None)
        super().__init__(monkeypatch)


def _token_path_round_trips(
    settings: Settings, real_redis: redis.Redis, counter: _Counter, ttl: int
) -> tuple[int, int]:
    app = create_app(settings.replace(trace_ttl_seconds=ttl), redis_client=real_redis)
    oauth = OAuthTestClient(app.test_client())
    client_id = oauth.register()["client_id"]
    flow = oauth.login(client_id)
    counter.sends = 0
    body = oauth.token(flow).get_json()
    code_trips = counter.sends
    counter.sends = 0
    assert oauth.refresh(client_id, body["refresh_token"]).status_code == 200
    return code_trips, counter.sends


def test_tracing_adds_no_round_trip_to_the_token_endpoint(
    settings: Settings, real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = _Counter(monkeypatch)
    # Warm up scripts and signing keys, so both runs start alike.
    _token_path_round_trips(settings, real_redis, counter, 0)
    without = _token_path_round_trips(settings, real_redis, counter, 0)
    traced = _token_path_round_trips(settings, real_redis, counter, 86400)
    assert traced == without
    assert without[0] >= 2  # the counter sees the endpoint's own round trips


@pytest.fixture
def backend_url(httpserver: t.Any) -> str:
    """An MCP backend that answers every POST with an empty result."""
    httpserver.expect_request("/mcp", method="POST").respond_with_json(
        {"jsonrpc": "2.0", "id": 1, "result": {}}
    )
    return str(httpserver.url_for("/mcp"))


def _gateway_round_trips(
    settings: Settings, real_redis: redis.Redis, counter: _Counter, ttl: int, url: str
) -> tuple[t.Any, list[int]]:
    app = create_app(
        settings.replace(trace_ttl_seconds=ttl, backend_url=url),
        redis_client=real_redis,
    )
    # A stream slot's release is sent in the background: outside any count.
    app.extensions["proxy"].streams.background_releases = False
    oauth = OAuthTestClient(app.test_client())
    _, body = oauth.tokens()
    trips = []
    for _ in range(2):  # the first call (traced) and a later one
        counter.sends = 0
        response = oauth.client.post(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={
                "Authorization": f"Bearer {body['access_token']}",
                "Accept": "application/json, text/event-stream",
            },
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        trips.append(counter.sends)
    return app, trips


def test_tracing_adds_no_round_trip_to_the_gateway_and_traces_its_first_call(
    settings: Settings,
    real_redis: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    backend_url: str,
) -> None:
    counter = _Counter(monkeypatch)
    _gateway_round_trips(settings, real_redis, counter, 0, backend_url)
    _, without = _gateway_round_trips(settings, real_redis, counter, 0, backend_url)
    app, traced = _gateway_round_trips(
        settings, real_redis, counter, 86400, backend_url
    )
    assert traced == without
    assert without[0] >= 1
    steps = _steps(app, _only_trace(app))
    calls = [s for s in steps if s["step"] == "gateway.first_call"]
    assert len(calls) == 1
    assert calls[0]["status"] == 200
