"""The gateway's per-tool scopes, tool policy and tools/list filtering.

The app runs in the Flask test client with tokens from the real front and back
channel (`oauth`); the MCP backend is a pytest-httpserver that answers
`tools/list` as JSON or as an SSE event (`X-Reply: sse`) and any `tools/call`
with a result, so each test sees exactly what the gateway let through.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import re
import typing as t

import pytest
import requests
from werkzeug import Request
from werkzeug import Response

from proxy import create_app
from proxy.config.settings import Settings
from proxy.config.tool_rules import RulesSource
from proxy.config.tool_rules import read_policy
from proxy.config.tool_rules import read_tool_scopes
from proxy.oauth import mcp_messages
from tests.oauth_client import OAuthTestClient

from ._helpers import ISSUER
from .test_metrics import TOKEN
from .test_metrics import scrape
from .test_metrics import value

PRM_URL = ISSUER + "/.well-known/oauth-protected-resource/mcp"
TOOLS = ["echo", "count", "whoami", "delete_repo", "delete_user"]
SCOPES = {
    "tools": {"echo": "mcp:read", "whoami": "mcp:read", "count": "mcp:write"},
    "implies": {"mcp:write": ["mcp:read"]},
}
POLICY = {
    "default": "allow",
    "rules": [
        {
            "effect": "deny",
            "tools": ["delete_*"],
            "catalogued": False,
            "groups": ["contractors"],
        },
        {"effect": "allow", "tools": ["delete_*"], "groups": ["admins"]},
        {"effect": "deny", "tools": ["delete_*"]},
        {"effect": "deny", "tools": ["whoami"], "email_domains": ["evil.example"]},
        {"effect": "deny", "tools": ["count"], "users": ["mallory@example.com"]},
    ],
}


def backend_reply(request: Request) -> Response:
    message = json.loads(request.get_data())
    if message["method"] == "tools/list":
        body = {
            "jsonrpc": "2.0",
            "id": message["id"],
            "result": {"tools": [{"name": n, "inputSchema": {}} for n in TOOLS]},
        }
    else:
        body = {
            "jsonrpc": "2.0",
            "id": message["id"],
            "result": {"content": [{"type": "text", "text": "ran"}]},
        }
    encoded = json.dumps(body).encode()
    if request.headers.get("X-Reply") == "sse":
        note = b'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/x"}\n\n'
        return Response(
            note + b"event: message\nid: 1\ndata: " + encoded + b"\n\n",
            mimetype="text/event-stream",
        )
    if request.headers.get("X-Reply") == "brotli":
        return Response(
            b"\x0b\x02\x80not-really-brotli",
            mimetype="application/json",
            headers={"Content-Encoding": "br"},
        )
    if request.headers.get("X-Reply") == "gzip":
        return Response(
            gzip.compress(encoded),
            mimetype="application/json",
            headers={"Content-Encoding": "gzip"},
        )
    return Response(encoded, mimetype="application/json")


@pytest.fixture
def backend(httpserver: t.Any) -> str:
    httpserver.expect_request("/mcp", method="POST").respond_with_handler(backend_reply)
    return t.cast(str, httpserver.url_for("/mcp"))


def with_rules(
    settings: Settings,
    tmp_path: t.Any,
    *,
    scopes: dict[str, t.Any] | None = SCOPES,
    policy: dict[str, t.Any] | None = POLICY,
) -> Settings:
    changes: dict[str, t.Any] = {}
    if scopes is not None:
        source = RulesSource.of("MCP_TOOL_SCOPES", json.dumps(scopes))
        assert source is not None
        changes["tool_scopes"] = read_tool_scopes(source)
    if policy is not None:
        path = tmp_path / "policy.json"
        path.write_text(json.dumps(policy))
        source = RulesSource.of("MCP_TOOL_POLICY", str(path))
        assert source is not None
        changes["tool_policy_source"] = source
        changes["tool_policy"] = read_policy(source)
    return settings.replace(**changes)


@pytest.fixture
def gateway_settings(settings: Settings, backend: str, tmp_path: t.Any) -> Settings:
    return with_rules(
        settings.replace(backend_url=backend, mcp_scopes=("mcp:read",)), tmp_path
    )


@pytest.fixture
def app(gateway_settings: Settings, store_client: t.Any) -> t.Any:
    return create_app(gateway_settings, redis_client=store_client)


def set_user(idp_url: str, user: str, **claims: t.Any) -> None:
    """The IdP's claims for `user` (oidc-provider-mock's PUT /users/<sub>)."""
    response = requests.put(
        f"{idp_url}/users/{user}",
        json={"email": user, "email_verified": True, **claims},
        timeout=5,
    )
    assert response.status_code == 204


def token_for(
    oauth: OAuthTestClient, idp_url: str, user: str, scope: str, **claims: t.Any
) -> str:
    set_user(idp_url, user, **claims)
    client_id = oauth.register()["client_id"]
    flow = oauth.login(client_id, user, scope=scope)
    response = oauth.token(flow)
    assert response.status_code == 200, response.get_data(as_text=True)
    return t.cast(str, response.get_json()["access_token"])


def rpc(
    client: t.Any,
    token: str,
    method: str,
    name: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    request_id: int = 1,
) -> t.Any:
    message: dict[str, t.Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if name is not None:
        message["params"] = {"name": name, "arguments": {}}
    return client.post(
        "/mcp",
        json=message,
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/json, text/event-stream",
            **(headers or {}),
        },
    )


def listed(response: t.Any) -> list[str]:
    """Tool names in a tools/list response, JSON or SSE."""
    body = response.get_data(as_text=True)
    if response.mimetype == "text/event-stream":
        datas = [
            json.loads(line[5:])
            for line in body.splitlines()
            if line.startswith("data:")
        ]
        results = [m for m in datas if "result" in m]
        assert len(results) == 1
        return [tool["name"] for tool in results[0]["result"]["tools"]]
    return [tool["name"] for tool in json.loads(body)["result"]["tools"]]


# --------------------------------------------------------------------------- #
# Per-tool scopes and the step-up challenge
# --------------------------------------------------------------------------- #


def test_a_read_token_calling_a_write_tool_gets_the_exact_step_up_challenge(
    client: t.Any, oauth: OAuthTestClient, idp_url: str
) -> None:
    """PRM-11: 403 insufficient_scope, scope = granted + needed, resource_metadata."""
    token = token_for(oauth, idp_url, "reader@example.com", "mcp:read")
    response = rpc(client, token, "tools/call", "count")
    assert response.status_code == 403
    assert response.headers["WWW-Authenticate"] == (
        'Bearer error="insufficient_scope", scope="mcp:read mcp:write", '
        f'resource_metadata="{PRM_URL}"'
    )
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_json()["error"] == "insufficient_scope"
    assert rpc(client, token, "tools/call", "echo").status_code == 200


def test_a_write_token_covers_read_tools(
    client: t.Any, oauth: OAuthTestClient, idp_url: str
) -> None:
    """SCOPE-3: mcp:write implies mcp:read."""
    token = token_for(oauth, idp_url, "writer@example.com", "mcp:write")
    assert rpc(client, token, "tools/call", "echo").status_code == 200
    assert rpc(client, token, "tools/call", "count").status_code == 200


def test_a_batch_needs_every_tools_scope(
    app: t.Any, client: t.Any, oauth: OAuthTestClient, idp_url: str
) -> None:
    seen: list[t.Any] = []
    app.extensions["proxy"].events.subscribe(seen.append)
    token = token_for(oauth, idp_url, "batch@example.com", "mcp:read")
    calls = [
        {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": n}}
        for i, n in enumerate(["echo", "count"])
    ]
    response = client.post(
        "/mcp", json=calls, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 403
    assert 'scope="mcp:read mcp:write"' in response.headers["WWW-Authenticate"]
    denied = [e.fields["tool"] for e in seen if e.name == "gateway.tool_denied"]
    assert denied == ["count"]  # the call that lacks the scope, not the first


def test_the_401_challenge_and_prm_keep_the_baseline_and_never_offline_access(
    client: t.Any,
) -> None:
    """PRM-5, PRM-9: the first challenge asks the baseline; PRM lists every
    scope the server defines, without offline_access (SEP-2207)."""
    response = client.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "x"})
    assert response.status_code == 401
    assert 'scope="mcp:read"' in response.headers["WWW-Authenticate"]
    prm = client.get("/.well-known/oauth-protected-resource/mcp").get_json()
    assert prm["scopes_supported"] == ["mcp:read", "mcp:write"]
    assert (
        "offline_access"
        in client.get("/.well-known/oauth-authorization-server").get_json()[
            "scopes_supported"
        ]
    )


def test_step_up_consent_shows_only_the_added_scope_and_then_the_call_succeeds(
    client: t.Any, oauth: OAuthTestClient, idp_url: str
) -> None:
    """SCOPE-2, SEP-835/SEP-2350: read token → 403 → re-authorize with the
    union → consent names only mcp:write → new token → the write tool runs."""
    user = "stepper@example.com"
    set_user(idp_url, user)
    client_id = oauth.register(scope="mcp:read")["client_id"]
    first = oauth.login(client_id, user, scope="mcp:read")
    token = oauth.token(first).get_json()["access_token"]
    challenged = rpc(client, token, "tools/call", "count")
    assert challenged.status_code == 403
    wanted = re.search(r'scope="([^"]*)"', challenged.headers["WWW-Authenticate"])
    assert wanted is not None

    flow, page = oauth.authorize(client_id, scope=wanted.group(1))
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    asked = re.search(r'<ul id="scopes">(.*?)</ul>', text, re.S)
    assert asked is not None
    assert re.findall(r"<code>([^<]+)</code>", asked.group(1)) == ["mcp:write"]
    approved = re.search(r'id="approved-scopes">(.*?)</p>', text, re.S)
    assert approved is not None
    assert html.unescape(approved.group(1)).split() == [
        "Already",
        "allowed:",
        "<code>mcp:read</code>",
    ]
    assert oauth.consent(flow).status_code == 303
    oauth.upstream_login(flow, user)
    assert oauth.callback(flow).status_code == 302
    stepped = oauth.token(flow).get_json()
    assert stepped["scope"].split() == ["mcp:read", "mcp:write"]
    assert (
        rpc(client, stepped["access_token"], "tools/call", "count").status_code == 200
    )


def test_mcp_required_scopes_honour_the_hierarchy(
    gateway_settings: Settings, store_client: t.Any, idp_url: str
) -> None:
    """SCOPE-3: MCP_REQUIRED_SCOPES=mcp:read admits a token holding mcp:write."""
    app = create_app(
        gateway_settings.replace(required_scopes=("mcp:read",)),
        redis_client=store_client,
    )
    client = app.test_client()
    token = token_for(OAuthTestClient(client), idp_url, "w@example.com", "mcp:write")
    assert rpc(client, token, "tools/call", "echo").status_code == 200


def test_asking_for_no_scope_grants_the_baseline_not_the_tool_scopes(
    oauth: OAuthTestClient,
) -> None:
    """SCOPE-4: absent scope = MCP_SCOPES; tool scopes need step-up."""
    client_id = oauth.register()["client_id"]
    flow = oauth.login(client_id, scope=None)
    assert oauth.token(flow).get_json()["scope"] == "mcp:read"


def test_remembered_consent_covers_the_narrower_scope(
    client: t.Any, oauth: OAuthTestClient, idp_url: str
) -> None:
    """SCOPE-3 at consent: approving mcp:write covers a later mcp:read request."""
    client_id = oauth.register()["client_id"]
    oauth.login(client_id, scope="mcp:write")
    flow, response = oauth.authorize(client_id, scope="mcp:read")
    assert response.status_code == 302  # straight upstream, no consent page
    assert flow.upstream_url


# --------------------------------------------------------------------------- #
# The tool policy, per rule kind
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("user", "claims", "tool", "status"),
    [
        ("admin@example.com", {"groups": ["admins"]}, "delete_repo", 200),
        ("admin@example.com", {"roles": ["admins"]}, "delete_repo", 200),
        ("staff@example.com", {"groups": ["staff"]}, "delete_repo", 403),
        # Rule 1 (not catalogued + contractors) fires before the admins' allow.
        ("c@example.com", {"groups": ["admins", "contractors"]}, "delete_repo", 403),
        ("eve@evil.example", {}, "whoami", 403),
        ("eve@evil.example", {}, "echo", 200),
        ("mallory@example.com", {}, "count", 403),
        ("trent@example.com", {}, "count", 200),
    ],
)
def test_policy_rule_kinds_at_the_gateway(
    client: t.Any,
    oauth: OAuthTestClient,
    idp_url: str,
    user: str,
    claims: dict[str, t.Any],
    tool: str,
    status: int,
) -> None:
    token = token_for(oauth, idp_url, user, "mcp:write", **claims)
    response = rpc(client, token, "tools/call", tool, request_id=5)
    assert response.status_code == status, response.get_data(as_text=True)
    if status == 403:
        body = response.get_json()
        assert body["id"] == 5
        assert body["error"]["code"] == -32003
        assert response.headers["Cache-Control"] == "no-store"
        assert "WWW-Authenticate" not in response.headers


def test_a_denial_is_an_audit_event_with_a_closed_reason(
    app: t.Any, client: t.Any, oauth: OAuthTestClient, idp_url: str
) -> None:
    seen: list[t.Any] = []
    app.extensions["proxy"].events.subscribe(seen.append)
    token = token_for(oauth, idp_url, "staff2@example.com", "mcp:read")
    assert rpc(client, token, "tools/call", "delete_repo").status_code == 403
    assert rpc(client, token, "tools/call", "count").status_code == 403
    denied = [e for e in seen if e.name == "gateway.tool_denied"]
    assert [(e.fields["reason"], e.fields["tool"]) for e in denied] == [
        ("denied_by_rule", "delete_repo"),
        ("insufficient_scope", "count"),
    ]
    assert denied[0].fields["rule"] == 3


def test_policy_checks_the_body_tool_and_a_lying_header_is_a_mismatch(
    client: t.Any, oauth: OAuthTestClient, idp_url: str
) -> None:
    """MCP 2026-07-28: the body is authoritative; Mcp-Name saying otherwise is
    400 with JSON-RPC error -32020, and never steers the policy."""
    token = token_for(oauth, idp_url, "liar@example.com", "mcp:write")
    response = rpc(
        client,
        token,
        "tools/call",
        "delete_repo",
        headers={"Mcp-Method": "tools/call", "Mcp-Name": "echo"},
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == -32020
    assert response.headers["Cache-Control"] == "no-store"
    agreeing = rpc(
        client,
        token,
        "tools/call",
        "echo",
        headers={"Mcp-Method": "tools/call", "Mcp-Name": "echo"},
    )
    assert agreeing.status_code == 200


def test_the_headers_check_and_the_tool_rules_parse_the_body_once(
    client: t.Any,
    oauth: OAuthTestClient,
    idp_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = token_for(oauth, idp_url, "once@example.com", "mcp:write")
    parses: list[bytes] = []
    read_json = mcp_messages.read_json

    def counted(body: bytes) -> t.Any:
        parses.append(body)
        return read_json(body)

    monkeypatch.setattr(mcp_messages, "read_json", counted)
    response = rpc(
        client,
        token,
        "tools/call",
        "echo",
        headers={"Mcp-Method": "tools/call", "Mcp-Name": "echo"},
    )
    assert response.status_code == 200
    assert len(parses) == 1


# --------------------------------------------------------------------------- #
# tools/list filtering
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("reply", ["json", "sse", "gzip"])
def test_tools_list_shows_only_what_the_caller_may_call(
    client: t.Any, oauth: OAuthTestClient, idp_url: str, reply: str
) -> None:
    token = token_for(oauth, idp_url, "eve@evil.example", "mcp:read")
    response = rpc(client, token, "tools/list", headers={"X-Reply": reply})
    assert response.status_code == 200
    assert "Content-Encoding" not in response.headers
    # count stays: its scope is reachable by step-up; the policy hides the rest.
    assert listed(response) == ["echo", "count"]


def test_a_tools_list_answer_that_cannot_be_read_lists_nothing(
    client: t.Any, oauth: OAuthTestClient, idp_url: str
) -> None:
    """J52: fail closed, never the backend's unfiltered list."""
    token = token_for(oauth, idp_url, "br@example.com", "mcp:read")
    response = rpc(client, token, "tools/list", headers={"X-Reply": "brotli"})
    assert "Content-Encoding" not in response.headers
    body = response.get_json()
    assert body["id"] == 1
    assert body["error"]["code"] == -32603


def test_a_resumed_stream_replaying_a_tools_list_answer_is_filtered(
    client: t.Any, oauth: OAuthTestClient, idp_url: str, httpserver: t.Any
) -> None:
    """2025-11-25 resumption: the TypeScript SDK gives what a GET with
    Last-Event-ID replays the id of the request it resumes, so a replayed
    list (under any id) must come filtered too."""
    replayed = {
        "jsonrpc": "2.0",
        "id": 41,
        "result": {"tools": [{"name": n, "inputSchema": {}} for n in TOOLS]},
    }
    httpserver.expect_request("/mcp", method="GET").respond_with_data(
        b"id: 9\ndata: " + json.dumps(replayed).encode() + b"\n\n",
        content_type="text/event-stream",
    )
    token = token_for(oauth, idp_url, "eve@evil.example", "mcp:read")
    response = client.get(
        "/mcp",
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "text/event-stream",
            "Last-Event-ID": "8",
        },
    )
    assert response.status_code == 200
    (request, _) = [e for e in httpserver.log if e[0].method == "GET"][-1]
    assert request.headers["Accept-Encoding"] == "identity"
    data = [
        json.loads(line[5:])
        for line in response.get_data().split(b"\n")
        if line.startswith(b"data:")
    ]
    assert [tool["name"] for tool in data[0]["result"]["tools"]] == ["echo", "count"]


def test_tools_list_for_an_admin_keeps_the_delete_tools(
    client: t.Any, oauth: OAuthTestClient, idp_url: str
) -> None:
    token = token_for(oauth, idp_url, "root@example.com", "mcp:read", groups=["admins"])
    response = rpc(client, token, "tools/list", headers={"X-Reply": "sse"})
    assert listed(response) == TOOLS
    body = response.get_data(as_text=True)
    assert "notifications/x" in body  # other events pass untouched
    assert "id: 1\n" in body  # the event keeps its fields


def test_without_rules_the_gateway_relays_untouched(
    settings: Settings, backend: str, store_client: t.Any, oauth: OAuthTestClient
) -> None:
    app = create_app(settings.replace(backend_url=backend), redis_client=store_client)
    plain = OAuthTestClient(app.test_client())
    _, body = plain.tokens()
    response = rpc(app.test_client(), body["access_token"], "tools/list")
    assert listed(response) == TOOLS


def test_a_denial_is_counted_in_the_metrics(
    gateway_settings: Settings, store_client: t.Any, idp_url: str
) -> None:
    """Every denial is a metric: events_total by name and a closed reason."""
    app = create_app(
        gateway_settings.replace(metrics_token=TOKEN), redis_client=store_client
    )
    client = app.test_client()
    token = token_for(OAuthTestClient(client), idp_url, "m@example.com", "mcp:read")
    name = "mcp_oauth_proxy_events_total"
    labels = {"event": "gateway.tool_denied", "reason": "denied_by_rule"}
    before = value(scrape(client), name, **labels)
    assert rpc(client, token, "tools/call", "delete_repo").status_code == 403
    after = scrape(client)
    assert value(after, name, **labels) - before == 1
    assert "delete_repo" not in after  # the tool is a field, never a label


def test_without_rules_a_lying_header_is_still_a_mismatch(
    settings: Settings, backend: str, store_client: t.Any
) -> None:
    """MCP 2026-07-28: the header check is the spec's, not the policy's."""
    app = create_app(settings.replace(backend_url=backend), redis_client=store_client)
    _, body = OAuthTestClient(app.test_client()).tokens()
    response = rpc(
        app.test_client(),
        body["access_token"],
        "tools/call",
        "echo",
        headers={"Mcp-Method": "tools/list"},
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == -32020


# --------------------------------------------------------------------------- #
# Bodies the rules cannot read: refused, never relayed unchecked
# --------------------------------------------------------------------------- #

DELETE_CALL = (
    b'{"jsonrpc":"2.0","id":7,"method":"tools/call",'
    b'"params":{"name":"delete_repo","arguments":{"x":%s}}}'
)


def post_raw(client: t.Any, token: str, body: bytes, **headers: str) -> t.Any:
    return client.post(
        "/mcp",
        data=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
            **headers,
        },
    )


def backend_calls(httpserver: t.Any) -> int:
    return sum(1 for request, _ in httpserver.log if request.path == "/mcp")


def test_a_byte_order_mark_does_not_hide_a_call_from_the_policy(
    client: t.Any, oauth: OAuthTestClient, idp_url: str, httpserver: t.Any
) -> None:
    """The SDK servers read past a BOM, so the rules read past it too."""
    token = token_for(oauth, idp_url, "bom@example.com", "mcp:write")
    response = post_raw(client, token, b"\xef\xbb\xbf" + DELETE_CALL % b"1")
    assert response.status_code == 403, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == -32003
    assert backend_calls(httpserver) == 0


@pytest.mark.parametrize(
    "argument",
    [b"[" * 3000 + b"]" * 3000, b"9" * 5000, b'"\xff"'],
    ids=["deep", "long_number", "invalid_utf8"],
)
def test_a_body_the_rules_cannot_read_is_a_parse_error_not_a_relay(
    client: t.Any,
    oauth: OAuthTestClient,
    idp_url: str,
    httpserver: t.Any,
    argument: bytes,
) -> None:
    """Node's JSON.parse reads the first two, Python's json does not: what
    the rules cannot read they cannot check, so it never reaches the backend."""
    token = token_for(oauth, idp_url, "deep@example.com", "mcp:write")
    response = post_raw(client, token, DELETE_CALL % argument)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == -32700
    assert response.headers["Cache-Control"] == "no-store"
    assert backend_calls(httpserver) == 0


def test_a_compressed_request_body_is_refused(
    client: t.Any, oauth: OAuthTestClient, idp_url: str, httpserver: t.Any
) -> None:
    """RFC 9110 §15.5.16: 415 naming what is accepted. A backend that inflates
    bodies (express.json()) would otherwise run a call no rule read."""
    token = token_for(oauth, idp_url, "gzip@example.com", "mcp:write")
    body = gzip.compress(DELETE_CALL % b"1")
    response = post_raw(client, token, body, **{"Content-Encoding": "gzip"})
    assert response.status_code == 415
    assert response.headers["Accept-Encoding"] == "identity"
    assert response.get_json()["error"]["code"] == -32600
    assert backend_calls(httpserver) == 0
    plain = post_raw(
        client,
        token,
        b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
        **{"Content-Encoding": "identity"},
    )
    assert plain.status_code == 200


#: A tools/list to a UTF-8 reader; decoded as UTF-7 (express.json() takes any
#: utf-* charset) the string hides a second "method": a call of delete_repo.
SMUGGLED = (
    b'{"jsonrpc":"2.0","id":7,"method":"tools/list","x":"+'
    + base64.b64encode(
        '","method":"tools/call","params":{"name":"delete_repo"},"y":"'.encode(
            "utf-16-be"
        )
    ).rstrip(b"=")
    + b'-"}'
)


@pytest.mark.parametrize(
    ("content_type", "relayed"),
    [
        ("application/json; charset=utf-7", False),
        ("application/json; charset=UTF-16", False),
        ("application/json; charset=utf-8; charset=utf-7", False),
        ("application/json; charset=utf-8", True),
        ('application/json;charset="UTF-8"', True),
    ],
)
def test_a_body_in_another_charset_than_utf_8_is_refused(
    client: t.Any,
    oauth: OAuthTestClient,
    idp_url: str,
    httpserver: t.Any,
    content_type: str,
    relayed: bool,
) -> None:
    """The rules read UTF-8: a backend told to decode otherwise would run
    another request than the one they allowed (415, never relayed)."""
    assert json.loads(SMUGGLED)["method"] == "tools/list"
    assert json.loads(SMUGGLED.decode("utf-7"))["params"]["name"] == "delete_repo"
    token = token_for(oauth, idp_url, "charset@example.com", "mcp:write")
    response = post_raw(client, token, SMUGGLED, **{"Content-Type": content_type})
    if relayed:
        assert response.status_code == 200, response.get_data(as_text=True)
        assert backend_calls(httpserver) == 1
        return
    assert response.status_code == 415
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_json()["error"]["code"] == -32600
    assert backend_calls(httpserver) == 0


def test_an_address_beyond_ascii_reaches_the_backend_percent_encoded(
    client: t.Any, oauth: OAuthTestClient, idp_url: str, httpserver: t.Any
) -> None:
    """HTTP header values cannot hold it as is: it was a 500."""
    token = token_for(oauth, idp_url, "用户@example.com", "mcp:read")
    response = rpc(client, token, "tools/call", "echo")
    assert response.status_code == 200, response.get_data(as_text=True)
    (request, _) = [entry for entry in httpserver.log if entry[0].path == "/mcp"][-1]
    assert request.headers["X-Forwarded-Email"] == "%E7%94%A8%E6%88%B7@example.com"
