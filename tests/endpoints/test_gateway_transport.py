"""The gateway relays both MCP revisions, binds sessions to their owner, checks
routing headers against the body, and ends idle streams (issue 13).

The app runs in the Flask test client in front of the real demo MCP server
(fixtures from test_gateway.py). The real-socket versions, under gunicorn,
are tests/e2e/test_gateway_transport.py and test_gateway_stream_timing.py.
"""

from __future__ import annotations

import base64
import time
import typing as t

import pytest

from proxy import create_app
from proxy.config.limits import Limits
from proxy.config.settings import Settings
from proxy.resource_server.mcp_cors import MAX_ANNOUNCED
from tests.oauth_client import OAuthTestClient
from tests.redis_round_trips import RoundTrips

from .test_gateway import INITIALIZE
from .test_gateway import INSPECTOR_ORIGIN
from .test_gateway import backend  # noqa: F401 - the module's demo backend
from .test_gateway import call_tool
from .test_gateway import echo_client  # noqa: F401 - the header-echo backend
from .test_gateway import initialize
from .test_gateway import mcp_headers
from .test_gateway import messages

MODERN = "2026-07-28"
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}


@pytest.fixture
def gateway_settings(settings: Settings, backend: t.Any) -> Settings:  # noqa: F811
    return settings.replace(backend_url=backend.url)


@pytest.fixture
def app(gateway_settings: Settings, store_client: t.Any) -> t.Any:
    return create_app(gateway_settings, redis_client=store_client)


def _token(oauth: OAuthTestClient, user: str = "alice@example.com") -> str:
    return t.cast(str, oauth.tokens(user)[1]["access_token"])


def _owner_of(app: t.Any, session: str) -> str | None:
    return t.cast("str | None", app.extensions["proxy"].store.sessions.owner(session))


# --------------------------------------------------------------------------- #
# Sessions bound to their owner (RS-5)
# --------------------------------------------------------------------------- #


def test_another_clients_token_with_my_session_is_404(
    client: t.Any, oauth: OAuthTestClient
) -> None:
    """RS-5: user B's token with user A's session id is refused as unknown."""
    alice, bob = _token(oauth), _token(oauth, "bob@example.com")
    session = initialize(client, alice)
    for method in ("post", "get", "delete"):
        refused = getattr(client, method)(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"},
            headers=mcp_headers(bob, session),
        )
        assert refused.status_code == 404, method
        assert refused.json == {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": -32600, "message": "Session not found"},
        }
    # The owner's session still works.
    listed = call_tool(client, alice, session, "echo", {"text": "mine"})
    assert messages(listed)[-1]["result"]["content"][0]["text"] == "mine"


def test_same_user_with_another_client_gets_404(
    client: t.Any, oauth: OAuthTestClient
) -> None:
    """The owner is the client and the user together (J45): the same user's
    token issued to another client cannot ride the session either."""
    session = initialize(client, _token(oauth))
    other_client = _token(oauth)  # registers a new client for alice
    refused = call_tool(client, other_client, session, "echo", {"text": "x"})
    assert refused.status_code == 404


def test_a_new_grant_of_the_same_client_and_user_keeps_the_session(
    client: t.Any, oauth: OAuthTestClient
) -> None:
    """J45: a re-login (new grant) of the same client and user continues it."""
    client_id, body = oauth.tokens()
    session = initialize(client, body["access_token"])
    again = oauth.token(oauth.login(client_id, "alice@example.com"))
    token = again.get_json()["access_token"]
    assert token != body["access_token"]
    echoed = call_tool(client, token, session, "echo", {"text": "again"})
    echoed.close()
    assert echoed.status_code == 200


def test_a_session_the_gateway_never_saw_open_is_404(
    client: t.Any, oauth: OAuthTestClient
) -> None:
    token = _token(oauth)
    refused = call_tool(client, token, "0123456789abcdef", "echo", {"text": "x"})
    assert refused.status_code == 404


def test_session_without_token_is_401_not_404(client: t.Any) -> None:
    """RS-5: a session id never authenticates; the token check comes first."""
    response = client.post(
        "/mcp", json={"jsonrpc": "2.0"}, headers=mcp_headers(None, "unknown")
    )
    assert response.status_code == 401


def test_owners_delete_removes_the_binding(
    app: t.Any, client: t.Any, oauth: OAuthTestClient
) -> None:
    token = _token(oauth)
    session = initialize(client, token)
    assert _owner_of(app, session) is not None
    deleted = client.delete("/mcp", headers=mcp_headers(token, session))
    deleted.close()
    assert deleted.status_code in (200, 204)
    assert _owner_of(app, session) is None


def test_the_binding_is_stored_with_its_ttl(
    app: t.Any, client: t.Any, oauth: OAuthTestClient, store_client: t.Any
) -> None:
    session = initialize(client, _token(oauth))
    keys = store_client.keys("*mcpsession:*")
    assert len(keys) == 1
    # The key names a hash of the session id, never the id itself.
    assert session not in str(keys[0])
    ttl = store_client.ttl(keys[0])
    assert 0 < ttl <= app.extensions["proxy"].settings.mcp_session_ttl_seconds


def test_opening_a_session_costs_three_round_trips(
    client: t.Any, oauth: OAuthTestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """initialize: the grant check (with the slot's lease) and the binding;
    the slot's release is not the request's (the worker's sender, or the
    grant's next acquire, ends it). The benchmark allows three per request."""
    # Before any stream: a sender already woken could land in the count.
    _no_background_releases(client)
    token = _token(oauth)
    initialize(client, token)  # warm: scripts loaded, keys cached
    trips = RoundTrips(monkeypatch)

    def post() -> int:
        response = client.post("/mcp", json=INITIALIZE, headers=mcp_headers(token))
        response.close()
        return t.cast(int, response.status_code)

    sends, status = trips.of(post)
    assert status == 200
    assert sends == 2


def test_presenting_a_session_costs_no_round_trip(
    client: t.Any, oauth: OAuthTestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owner check rides in the pipeline that checks the grant, with the
    stream slot's lease: a request with a session id makes as many round trips
    as one without, one in all (that pipeline; the slot's release is sent
    later, or ends in the next call's pipeline)."""
    _no_background_releases(client)  # before any stream, as above
    token = _token(oauth)
    session = initialize(client, token)
    call = {"jsonrpc": "2.0", "id": 4, "method": "tools/list"}

    def post(headers: dict[str, str]) -> int:
        response = client.post("/mcp", json=call, headers=headers)
        response.close()  # the slot's release belongs to this request
        return t.cast(int, response.status_code)

    trips = RoundTrips(monkeypatch)
    post(mcp_headers(token, session))  # warm
    with_session, status = trips.of(lambda: post(mcp_headers(token, session)))
    assert status == 200
    # Without a session the backend refuses tools/list (400): no session is
    # opened, nothing is bound, and Redis sees the same requests.
    without, status = trips.of(lambda: post(mcp_headers(token)))
    assert status == 400
    assert with_session == without == 1


def _no_background_releases(client: t.Any) -> None:
    """Stop the worker's release sender, whose sends would land in a count."""
    client.application.extensions["proxy"].streams.background_releases = False


# --------------------------------------------------------------------------- #
# 2026-07-28: Mcp-Method / Mcp-Name agree with the body
# --------------------------------------------------------------------------- #


def _modern(
    client: t.Any, token: str, method: str, params: dict[str, t.Any], **headers: str
) -> t.Any:
    return client.post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 11, "method": method, "params": params},
        headers={
            **mcp_headers(token),
            "MCP-Protocol-Version": MODERN,
            **headers,
        },
    )


def _echo_params(text: str) -> dict[str, t.Any]:
    return {"name": "echo", "arguments": {"text": text}, "_meta": MODERN_META}


def test_matching_routing_headers_are_relayed(
    client: t.Any, oauth: OAuthTestClient
) -> None:
    token = _token(oauth)
    response = _modern(
        client,
        token,
        "tools/call",
        _echo_params("modern"),
        **{"Mcp-Method": "tools/call", "Mcp-Name": "echo"},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert "Mcp-Session-Id" not in response.headers
    assert messages(response)[-1]["result"]["content"][0]["text"] == "modern"


def test_base64_encoded_name_is_compared_decoded(
    client: t.Any, oauth: OAuthTestClient
) -> None:
    token = _token(oauth)
    encoded = "=?base64?" + base64.b64encode(b"echo").decode() + "?="
    response = _modern(
        client,
        token,
        "tools/call",
        _echo_params("b64"),
        **{"Mcp-Method": "tools/call", "Mcp-Name": encoded},
    )
    response.close()
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Mcp-Method": "tools/list", "Mcp-Name": "echo"}, "method"),
        ({"Mcp-Method": "tools/call", "Mcp-Name": "whoami"}, "name"),
        ({"Mcp-Name": "whoami"}, "name without method"),
        ({"Mcp-Method": "tools/call", "Mcp-Name": "=?base64?not base64?="}, "bad b64"),
    ],
)
def test_routing_header_disagreeing_with_the_body_is_400_header_mismatch(
    client: t.Any, oauth: OAuthTestClient, headers: dict[str, str], reason: str
) -> None:
    """The body stays authoritative: a header that says otherwise is refused
    with the JSON-RPC HeaderMismatch error (-32020), the request's id kept."""
    token = _token(oauth)
    response = _modern(client, token, "tools/call", _echo_params("x"), **headers)
    assert response.status_code == 400, reason
    assert response.mimetype == "application/json"
    body = response.json
    assert body["jsonrpc"] == "2.0"
    assert body["id"] == 11
    assert body["error"]["code"] == -32020


def test_a_routing_header_sent_twice_is_header_mismatch(
    client: t.Any, oauth: OAuthTestClient
) -> None:
    token = _token(oauth)
    headers = [
        *mcp_headers(token).items(),
        ("MCP-Protocol-Version", MODERN),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Method", "tools/call"),
    ]
    response = client.post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}},
        headers=headers,
    )
    assert response.status_code == 400
    assert response.json["error"]["code"] == -32020


def test_server_discover_and_x_mcp_header_params_are_relayed(
    client: t.Any, oauth: OAuthTestClient
) -> None:
    token = _token(oauth)
    discover = _modern(
        client,
        token,
        "server/discover",
        {"_meta": MODERN_META},
        **{"Mcp-Method": "server/discover"},
    )
    assert discover.status_code == 200, discover.get_data(as_text=True)
    assert MODERN in messages(discover)[-1]["result"]["supportedVersions"]
    region = _modern(
        client,
        token,
        "tools/call",
        {"name": "region_echo", "arguments": {"region": "eu"}, "_meta": MODERN_META},
        **{
            "Mcp-Method": "tools/call",
            "Mcp-Name": "region_echo",
            "Mcp-Param-Region": "eu",
        },
    )
    assert region.status_code == 200, region.get_data(as_text=True)
    result = messages(region)[-1]["result"]["structuredContent"]
    assert result == {"region": "eu", "header": "eu"}


def test_both_revisions_headers_reach_the_backend_unchanged(
    echo_client: t.Any,  # noqa: F811
) -> None:
    """Relayed as sent: the 2025-11-25 headers (MCP-Protocol-Version,
    Last-Event-ID) and the 2026-07-28 ones (Mcp-Method, Mcp-Name, Mcp-Param-*,
    trace context), values untouched."""
    _, body = OAuthTestClient(echo_client).tokens()
    sent = {
        "MCP-Protocol-Version": MODERN,
        "Last-Event-ID": "stream-1/42",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "region_echo",
        "Mcp-Param-Region": "=?base64?ZXUtd2VzdA==?=",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    response = echo_client.post(
        "/mcp",
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "region_echo", "arguments": {"region": "eu-west"}},
        },
        headers={**mcp_headers(body["access_token"]), **sent},
    )
    assert response.status_code == 200
    seen = response.get_json()
    for name, value in sent.items():
        assert seen[name.lower()] == value, name


# --------------------------------------------------------------------------- #
# CORS on the MCP path (CORS-4)
# --------------------------------------------------------------------------- #


def _preflight(client: t.Any, announced: str) -> t.Any:
    return client.options(
        "/mcp",
        headers={
            "Origin": INSPECTOR_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": announced,
        },
    )


def _names(value: str) -> set[str]:
    return {name.strip().lower() for name in value.split(",") if name.strip()}


def test_preflight_allows_the_announced_mcp_headers_only(client: t.Any) -> None:
    """CORS-4: both revisions' headers and announced Mcp-Param-* names; never
    Cookie or another header a page announces."""
    response = _preflight(
        client,
        "authorization, content-type, mcp-method, mcp-name, mcp-param-region, "
        "cookie, x-forwarded-user, mcp-param-bad/name, proxy-authorization",
    )
    assert response.status_code == 204
    allowed = _names(response.headers["Access-Control-Allow-Headers"])
    assert {
        "authorization",
        "content-type",
        "mcp-protocol-version",
        "mcp-session-id",
        "last-event-id",
        "mcp-method",
        "mcp-name",
        "mcp-param-region",
    } <= allowed
    assert not {"cookie", "x-forwarded-user", "proxy-authorization"} & allowed
    assert "mcp-param-bad/name" not in allowed
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "Access-Control-Request-Headers" in response.headers.get("Vary", "")


def test_preflight_bounds_the_announced_names(client: t.Any) -> None:
    many = ", ".join(f"mcp-param-p{i}" for i in range(MAX_ANNOUNCED * 4))
    long_name = "mcp-param-" + "x" * 500
    response = _preflight(client, f"{many}, {long_name}")
    allowed = _names(response.headers["Access-Control-Allow-Headers"])
    assert len([n for n in allowed if n.startswith("mcp-param-")]) <= MAX_ANNOUNCED
    assert long_name not in allowed


def test_responses_expose_what_clients_read(
    client: t.Any, oauth: OAuthTestClient
) -> None:
    token = _token(oauth)
    response = client.post(
        "/mcp",
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        },
        headers={**mcp_headers(token), "Origin": INSPECTOR_ORIGIN},
    )
    exposed = _names(response.headers["Access-Control-Expose-Headers"])
    assert {
        "www-authenticate",
        "mcp-session-id",
        "mcp-protocol-version",
        "retry-after",
    } <= exposed
    response.close()


# --------------------------------------------------------------------------- #
# Streams: head at once, idle ones ended
# --------------------------------------------------------------------------- #


def test_a_quiet_stream_is_answered_at_once_and_ended_when_idle(
    gateway_settings: Settings, store_client: t.Any
) -> None:
    """The GET stream's head arrives before the backend's first event (a ping
    15 s later), and with STREAM_IDLE_TIMEOUT_SECONDS=1 the silent stream is
    ended and gives its slot back."""
    app = create_app(
        gateway_settings.replace(
            limits=Limits(max_streams_per_grant=1, stream_idle_timeout_seconds=1)
        ),
        redis_client=store_client,
    )
    client = app.test_client()
    token = _token(OAuthTestClient(client))
    session = initialize(client, token)
    started = time.monotonic()
    stream = client.get(
        "/mcp",
        headers={**mcp_headers(token, session), "Accept": "text/event-stream"},
        buffered=False,
    )
    head_after = time.monotonic() - started
    assert stream.status_code == 200
    assert stream.mimetype == "text/event-stream"
    assert stream.get_data() == b""  # ended by the idle timeout, nothing sent
    ended_after = time.monotonic() - started
    stream.close()
    print(f"\nhead after {head_after:.2f} s, ended after {ended_after:.2f} s")
    assert app.extensions["proxy"].streams.open_count == 0
    again = client.get(
        "/mcp",
        headers={**mcp_headers(token, session), "Accept": "text/event-stream"},
        buffered=False,
    )
    assert again.status_code == 200  # the slot came back
    again.close()


def test_a_request_refused_after_the_grant_check_gives_its_lease_back(
    gateway_settings: Settings, store_client: t.Any
) -> None:
    """The slot's lease rides in the grant check; a request refused after it
    (here: a session that is not its own) leaves no lease behind."""
    app = create_app(
        gateway_settings.replace(limits=Limits(max_streams_per_grant=1)),
        redis_client=store_client,
    )
    client = app.test_client()
    oauth = OAuthTestClient(client)
    alice, bob = _token(oauth), _token(oauth, "bob@example.com")
    bobs = initialize(client, bob)
    session = initialize(client, alice)
    for _ in range(3):
        refused = call_tool(client, alice, bobs, "echo", {"text": "x"})
        assert refused.status_code == 404
    assert app.extensions["proxy"].streams.open_count == 0
    echoed = call_tool(client, alice, session, "echo", {"text": "still"})
    assert messages(echoed)[-1]["result"]["content"][0]["text"] == "still"


def test_a_revoked_token_on_a_full_worker_is_401_not_503(
    gateway_settings: Settings, store_client: t.Any
) -> None:
    """PRM-7: the token is judged before the worker's stream cap."""
    app = create_app(
        gateway_settings.replace(limits=Limits(max_streams=1)),
        redis_client=store_client,
    )
    client = app.test_client()
    oauth = OAuthTestClient(client)
    client_id, body = oauth.tokens()
    session = initialize(client, body["access_token"])
    held = client.get(
        "/mcp",
        headers={
            **mcp_headers(body["access_token"], session),
            "Accept": "text/event-stream",
        },
        buffered=False,
    )
    try:
        assert held.status_code == 200
        full = call_tool(client, body["access_token"], session, "echo", {"text": "x"})
        assert full.status_code == 503
        revoked = client.post(
            "/oauth2/revoke",
            data={"token": body["refresh_token"], "client_id": client_id},
        )
        assert revoked.status_code == 200
        refused = call_tool(
            client, body["access_token"], session, "echo", {"text": "x"}
        )
        assert refused.status_code == 401
    finally:
        held.close()


def test_scripts_lost_by_redis_are_loaded_again(
    client: t.Any, oauth: OAuthTestClient, store_client: t.Any
) -> None:
    """Redis restarted empty: the grant check's pipeline (with the slot's
    lease script) is sent again once its scripts are loaded."""
    token = _token(oauth)
    session = initialize(client, token)
    store_client.script_flush()
    echoed = call_tool(client, token, session, "echo", {"text": "reloaded"})
    assert messages(echoed)[-1]["result"]["content"][0]["text"] == "reloaded"
