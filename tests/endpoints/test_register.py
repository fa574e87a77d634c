"""POST /oauth2/register: RFC 7591 Dynamic Client Registration."""

from __future__ import annotations

import dataclasses
import json
import time
import typing as t

import pytest

from proxy import create_app
from proxy.keys.keyring import sha256_hex
from tests.oauth_client import OAuthTestClient

from ._helpers import assert_json_error
from ._helpers import assert_no_store

LOOPBACK = "http://127.0.0.1:33418/callback"


def _register(client: t.Any, body: t.Any, **kw: t.Any) -> t.Any:
    return client.post("/oauth2/register", json=body, **kw)


def _ok(client: t.Any, body: dict[str, t.Any]) -> dict[str, t.Any]:
    response = _register(client, body)
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return t.cast(dict[str, t.Any], response.get_json())


def test_open_registration_without_credentials(client: t.Any) -> None:
    """DCR-1: a minimal valid body with no Authorization header gets 201."""
    body = _ok(client, {"redirect_uris": [LOOPBACK]})
    assert body["client_id"]


def test_response_echoes_effective_metadata(client: t.Any) -> None:
    """DCR-2: client_id plus every registered value, defaults included."""
    body = _ok(
        client,
        {
            "redirect_uris": [LOOPBACK],
            "token_endpoint_auth_method": "none",
            "client_name": "Claude Code",
            "scope": "mcp",
        },
    )
    assert body["redirect_uris"] == [LOOPBACK]
    assert body["token_endpoint_auth_method"] == "none"
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    assert body["response_types"] == ["code"]
    assert body["client_name"] == "Claude Code"
    assert body["scope"] == "mcp"


def test_client_id_issued_at_is_now(client: t.Any) -> None:
    """DCR-3: client_id_issued_at is epoch seconds, within a minute of now."""
    issued = _ok(client, {"redirect_uris": [LOOPBACK]})["client_id_issued_at"]
    assert isinstance(issued, int)
    assert abs(issued - time.time()) < 60


@pytest.mark.parametrize("method", ["client_secret_post", "client_secret_basic"])
def test_issued_secret_comes_with_its_expiry(client: t.Any, method: str) -> None:
    """DCR-4: whenever client_secret is issued, client_secret_expires_at is too."""
    body = _ok(
        client, {"redirect_uris": [LOOPBACK], "token_endpoint_auth_method": method}
    )
    assert body["client_secret"]
    assert body["client_secret_expires_at"] == 0
    assert body["token_endpoint_auth_method"] == method


def test_public_client_gets_no_secret(client: t.Any) -> None:
    """DCR-5: token_endpoint_auth_method none registers a public client."""
    body = _ok(
        client, {"redirect_uris": [LOOPBACK], "token_endpoint_auth_method": "none"}
    )
    assert "client_secret" not in body
    assert "client_secret_expires_at" not in body


def test_omitted_auth_method_is_returned_explicitly(client: t.Any) -> None:
    """DCR-6: the RFC default client_secret_basic is named, with its secret."""
    body = _ok(client, {"redirect_uris": [LOOPBACK]})
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    assert body["client_secret"]
    assert body["client_secret_expires_at"] == 0


def test_secret_is_stored_only_as_a_hash(client: t.Any, app: t.Any) -> None:
    """Issue: the secret is returned once and stored hashed (SHA-256)."""
    body = _ok(client, {"redirect_uris": [LOOPBACK]})
    store = app.extensions["proxy"].store
    raw = store.redis.get(store.keys.client(body["client_id"]))
    assert body["client_secret"] not in raw
    assert json.loads(raw)["client_secret_hash"] == sha256_hex(body["client_secret"])


@pytest.mark.parametrize(
    "body",
    [{}, {"redirect_uris": []}, {"redirect_uris": None}, {"client_name": "x"}],
)
def test_missing_redirect_uris_is_invalid_redirect_uri(
    client: t.Any, body: dict[str, t.Any]
) -> None:
    """DCR-7, DCR-12: missing or empty redirect_uris → 400 invalid_redirect_uri."""
    response = _register(client, body)
    assert_json_error(response, 400, "invalid_redirect_uri")
    assert_no_store(response)


@pytest.mark.parametrize(
    ("uri", "accepted"),
    [
        ("http://evil.example/cb", False),
        ("https://a.example/cb#x", False),
        ("https://a.example/cb#", False),
        ("/relative/cb", False),
        ("https://user:pw@a.example/cb", False),
        ("http://127.0.0.1:9/cb", True),
        ("http://localhost/cb", True),
        ("http://[::1]:8080/cb", True),
        ("https://a.example/cb", True),
    ],
)
def test_redirect_uri_must_be_https_or_loopback_without_fragment(
    client: t.Any, uri: str, accepted: bool
) -> None:
    """DCR-8: https, or http on a loopback host; absolute; no fragment."""
    response = _register(client, {"redirect_uris": [uri]})
    if accepted:
        assert response.status_code == 201
        assert response.get_json()["redirect_uris"] == [uri]
    else:
        assert_json_error(response, 400, "invalid_redirect_uri")


@pytest.mark.parametrize(
    "uri",
    [
        "javascript:alert(1)",
        "data:text/html,hi",
        "file:///etc/passwd",
        "vbscript:msgbox(1)",
        # Only Cursor's own catalogued callback is allowed, not its scheme.
        "cursor://anysphere.cursor-mcp/oauth/other",
        "com.example.app:/callback",
    ],
)
def test_dangerous_and_unlisted_schemes_are_refused(client: t.Any, uri: str) -> None:
    """DCR-9: dangerous schemes always, private-use schemes unless allowlisted."""
    assert_json_error(
        _register(client, {"redirect_uris": [uri]}), 400, "invalid_redirect_uri"
    )


def test_disallowed_uris_are_dropped_when_others_remain(client: t.Any) -> None:
    """DCR-9 (decision J1): a mix is trimmed; the accepted set is echoed."""
    body = _ok(
        client,
        {
            "redirect_uris": [
                "com.example.app:/callback",
                LOOPBACK,
                "javascript:alert(1)",
            ]
        },
    )
    assert body["redirect_uris"] == [LOOPBACK]


@pytest.mark.parametrize(
    ("scheme", "uri"),
    [
        ("com.example.app", "com.example.app:/callback"),
        ("com.example.app", "com.example.app://callback"),
    ],
)
def test_allowlisted_reverse_dns_scheme_is_accepted(
    settings: t.Any, fake_redis: t.Any, scheme: str, uri: str
) -> None:
    """DCR-9: a private-use scheme registers only when the operator lists it."""
    app = create_app(
        settings.replace(allowed_redirect_schemes=frozenset({scheme})),
        redis_client=fake_redis,
    )
    assert _ok(app.test_client(), {"redirect_uris": [uri]})["redirect_uris"] == [uri]


@pytest.mark.parametrize(
    "extra",
    [
        {"grant_types": ["password"]},
        {"grant_types": ["authorization_code", "client_credentials"]},
        {"grant_types": "authorization_code"},
        {"response_types": ["token"]},
        {"response_types": []},
        {"token_endpoint_auth_method": "private_key_jwt"},
        {"token_endpoint_auth_method": 3},
        {"client_name": 5},
        {"scope": ["mcp"]},
        {"contacts": "a@example.com"},
    ],
)
def test_unsupported_metadata_is_invalid_client_metadata(
    client: t.Any, extra: dict[str, t.Any]
) -> None:
    """DCR-10, DCR-12: unsupported or wrongly typed metadata → 400 JSON."""
    response = _register(client, {"redirect_uris": [LOOPBACK], **extra})
    assert_json_error(response, 400, "invalid_client_metadata")
    assert_no_store(response)


@pytest.mark.parametrize("body", ['{"redirect_uris": [', "[1, 2]", '"text"', "null"])
def test_non_object_json_is_invalid_client_metadata(client: t.Any, body: str) -> None:
    """DCR-10: a body that is not a JSON object → 400 invalid_client_metadata."""
    response = client.post(
        "/oauth2/register", data=body, content_type="application/json"
    )
    assert_json_error(response, 400, "invalid_client_metadata")


def test_form_body_is_invalid_client_metadata(client: t.Any) -> None:
    """GEN-9: /register parses JSON; a form body gets an OAuth JSON 400."""
    response = client.post("/oauth2/register", data={"redirect_uris": LOOPBACK})
    assert_json_error(response, 400, "invalid_client_metadata")
    assert_no_store(response)


def test_get_register_is_405_json(client: t.Any) -> None:
    """GEN-8: /register accepts POST only; GET gets 405 with a JSON error."""
    response = client.get("/oauth2/register")
    assert response.status_code == 405
    assert response.mimetype == "application/json"
    assert "POST" in response.headers["Allow"]


def test_grant_types_without_authorization_code_are_refused(client: t.Any) -> None:
    """DCR-11: grant_types and response_types stay consistent (code ↔ code)."""
    response = _register(
        client, {"redirect_uris": [LOOPBACK], "grant_types": ["refresh_token"]}
    )
    assert_json_error(response, 400, "invalid_client_metadata")


def test_unknown_fields_are_ignored(client: t.Any) -> None:
    """DCR-13: fields the AS does not understand do not fail registration."""
    body = _ok(
        client,
        {
            "redirect_uris": [LOOPBACK],
            "foo": "bar",
            "software_id": "x",
            "software_version": "1.0",
            "client_uri": "https://c.example",
            "logo_uri": "https://c.example/logo.png",
            "jwks": {"keys": []},
        },
    )
    assert "foo" not in body


def test_redirect_uris_are_echoed_byte_for_byte(client: t.Any) -> None:
    """DCR-14: no normalisation; the trailing slash survives."""
    uris = ["http://127.0.0.1:33418/", "https://A.example/cb?x=1"]
    assert _ok(client, {"redirect_uris": uris})["redirect_uris"] == uris


def test_native_application_type_with_loopback(client: t.Any) -> None:
    """DCR-15: application_type native with a loopback redirect registers."""
    body = _ok(
        client,
        {"application_type": "native", "redirect_uris": ["http://127.0.0.1/cb"]},
    )
    assert body["redirect_uris"] == ["http://127.0.0.1/cb"]


def test_client_ids_never_look_like_cimd_urls(client: t.Any) -> None:
    """DCR-16: generated client_ids are unique and never start with https://."""
    ids = {_ok(client, {"redirect_uris": [LOOPBACK]})["client_id"] for _ in range(20)}
    assert len(ids) == 20
    assert not any(i.startswith(("https://", "http://")) for i in ids)


def test_deleted_client_at_token_is_401_invalid_client(
    oauth: OAuthTestClient, app: t.Any
) -> None:
    """DCR-17: a deleted client_id at /token → 401 invalid_client (re-register)."""
    client_id = oauth.register()["client_id"]
    flow = oauth.login(client_id)
    store = app.extensions["proxy"].store
    store.redis.delete(store.keys.client(client_id))
    response = oauth.token(flow)
    assert_json_error(response, 401, "invalid_client")
    assert_no_store(response)


def test_unknown_client_at_token_is_401_invalid_client(client: t.Any) -> None:
    """DCR-17: a client_id that never existed → 401 invalid_client."""
    response = client.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": "x" * 20 + "." + "y" * 43,
            "code_verifier": "v" * 43,
            "client_id": "mcp_never_registered",
        },
    )
    assert_json_error(response, 401, "invalid_client")


def test_empty_scope_is_absent(client: t.Any) -> None:
    """SCOPE-4: MCP Inspector registers scope "" and gets 201."""
    body = _ok(client, {"redirect_uris": [LOOPBACK], "scope": ""})
    assert "scope" not in body


def test_success_is_no_store(client: t.Any) -> None:
    """GEN-4: the registration response carries a secret: no-store."""
    assert_no_store(_register(client, {"redirect_uris": [LOOPBACK]}))


def test_oversized_body_is_refused(client: t.Any) -> None:
    """Issue: a body over the registration limit → 400 invalid_client_metadata."""
    body = {"redirect_uris": [LOOPBACK], "client_name": "x", "pad": "p" * 20_000}
    assert_json_error(_register(client, body), 400, "invalid_client_metadata")


def test_too_many_fields_are_refused(client: t.Any) -> None:
    """Issue: more metadata fields than the limit → 400 invalid_client_metadata."""
    body: dict[str, t.Any] = {"redirect_uris": [LOOPBACK]}
    body.update({f"field{i}": i for i in range(100)})
    assert_json_error(_register(client, body), 400, "invalid_client_metadata")


def test_too_many_redirect_uris_are_refused(client: t.Any) -> None:
    """Issue: a redirect URI list over the limit → 400 invalid_client_metadata."""
    uris = [f"http://127.0.0.1/cb{i}" for i in range(50)]
    assert_json_error(
        _register(client, {"redirect_uris": uris}), 400, "invalid_client_metadata"
    )


def test_huge_body_is_not_a_500(client: t.Any) -> None:
    """GEN-9: a body past the server's size cap gets a JSON 4xx, never a 500."""
    response = client.post(
        "/oauth2/register",
        data="x" * (200 * 1024),
        content_type="application/json",
    )
    assert 400 <= response.status_code < 500
    assert response.mimetype == "application/json"


def test_body_over_the_request_limit_is_invalid_client_metadata(client: t.Any) -> None:
    """DCR-12 / RATE-2: even a body past the server's request limit is a JSON 400."""
    body = json.dumps({"redirect_uris": ["https://a.example/cb"], "x": "y" * 70_000})
    response = client.post(
        "/oauth2/register", data=body, content_type="application/json"
    )
    assert_json_error(response, 400, "invalid_client_metadata")


def test_deeply_nested_body_is_invalid_client_metadata(client: t.Any) -> None:
    """A 10 KB body of nested arrays (RecursionError in the parser) is a JSON 400."""
    response = client.post(
        "/oauth2/register",
        data="[" * 5000 + "]" * 5000,
        content_type="application/json",
    )
    assert_json_error(response, 400, "invalid_client_metadata")


def _register_raw(client: t.Any, text: str) -> t.Any:
    """A body sent as written: JSON escapes such as a lone \\ud800 survive."""
    return client.post(
        "/oauth2/register", data=text.encode(), content_type="application/json"
    )


@pytest.mark.parametrize(
    "uri",
    [
        "https://evil.example\\\\.claude.ai/api/mcp/auth_callback",
        "https://a..b/cb",
        "https://0x7f.1/cb",
        "https://claude.ai/cb\\u202e",
        "https://claude.ai/\\ud800",
    ],
)
def test_a_redirect_uri_a_browser_reads_differently_is_refused(
    client: t.Any, uri: str
) -> None:
    """Alone, it leaves nothing to register: 400 invalid_redirect_uri."""
    response = _register_raw(client, '{"redirect_uris": ["' + uri + '"]}')
    assert_json_error(response, 400, "invalid_redirect_uri")


@pytest.mark.parametrize(
    "name",
    ["Evil\\u202eedoC", "Zero\\u200bWidth", "Bell\\u0007", "Half \\ud800", "\\udfff"],
)
def test_client_name_with_controls_bidi_or_surrogates_is_refused(
    client: t.Any, name: str
) -> None:
    body = f'{{"redirect_uris": ["{LOOPBACK}"], "client_name": "{name}"}}'
    assert_json_error(_register_raw(client, body), 400, "invalid_client_metadata")


@pytest.mark.parametrize("field", ["client_uri", "logo_uri", "tos_uri", "policy_uri"])
@pytest.mark.parametrize(
    "value", ["https://evil.example\\\\.good.example/", "javascript:alert(1)", "x"]
)
def test_client_urls_must_be_browser_safe_https(
    client: t.Any, field: str, value: str
) -> None:
    body = f'{{"redirect_uris": ["{LOOPBACK}"], "{field}": "{value}"}}'
    assert_json_error(_register_raw(client, body), 400, "invalid_client_metadata")


def test_unicode_client_names_are_kept(client: t.Any) -> None:
    """Printable non-ASCII text is a name like any other."""
    registered = _ok(
        client, {"redirect_uris": [LOOPBACK], "client_name": "Café Über 日本"}
    )
    assert registered["client_name"] == "Café Über 日本"


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "application/x-www-form-urlencoded"]
)
def test_an_oversized_body_is_refused_without_a_500(
    settings: t.Any, store_client: t.Any, content_type: str | None
) -> None:
    """Found by fuzzing: recording the refusal read the oversized body as a form
    inside the error handler, and werkzeug's 413 there became a 500. (With
    rate limits on, their hook reads the form first and hid it.)"""
    limits = dataclasses.replace(settings.limits, enabled=False)
    app = create_app(settings.replace(limits=limits), redis_client=store_client)
    client = app.test_client()
    body = json.dumps({"": None, "a" * 4000: "\x00" * 200_000}).encode()
    response = client.post("/oauth2/register", data=body, content_type=content_type)
    assert 400 <= response.status_code < 500
    assert response.get_json()["error"] in (
        "invalid_client_metadata",
        "invalid_request",
    )
    assert_no_store(response)
