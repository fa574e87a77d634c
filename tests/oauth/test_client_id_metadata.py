"""proxy/oauth/client_id_metadata.py: the CIMD URL and document rules."""

from __future__ import annotations

import typing as t

import pytest

from proxy.oauth.client_id_metadata import InvalidDocumentError
from proxy.oauth.client_id_metadata import all_loopback
from proxy.oauth.client_id_metadata import document_fingerprint
from proxy.oauth.client_id_metadata import is_metadata_document_url
from proxy.oauth.client_id_metadata import validate_client_id_url
from proxy.oauth.client_id_metadata import validate_document

URL = "https://app.example.com/oauth/client.json"


def document(**members: t.Any) -> dict[str, t.Any]:
    base: dict[str, t.Any] = {
        "client_id": URL,
        "client_name": "Example",
        "redirect_uris": ["https://app.example.com/callback"],
    }
    base.update(members)
    return {k: v for k, v in base.items() if v is not None}


def validate(doc: t.Any, schemes: frozenset[str] = frozenset()) -> dict[str, t.Any]:
    return validate_document(URL, doc, private_schemes=schemes)


@pytest.mark.parametrize(
    ("client_id", "expected"),
    [
        (URL, True),
        ("HTTPS://app.example.com/c", True),
        ("https://app.example.com", True),  # in the URL space, refused later
        ("http://app.example.com/c.json", False),
        ("mcp_3hVx", False),
        ("app.example.com/c.json", False),
    ],
)
def test_https_client_ids_are_metadata_document_urls(
    client_id: str, expected: bool
) -> None:
    assert is_metadata_document_url(client_id) is expected


def test_a_good_client_id_url_gives_its_host() -> None:
    assert validate_client_id_url("https://App.example.com:8443/a/b.json") == (
        "app.example.com"
    )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://app.example.com", "path"),
        ("https://app.example.com/", "path"),
        ("https://u:p@app.example.com/c.json", "userinfo"),
        ("https://u@app.example.com/c.json", "userinfo"),
        ("https://app.example.com/c.json#x", "fragment"),
        ("https://app.example.com/c.json?v=1", "query"),
        ("https://app.example.com/./c.json", "dot"),
        ("https://app.example.com/a/../c.json", "dot"),
        ("https://app.example.com/a/%2e%2E/c.json", "dot"),
        ("https://app.example.com/a/.%2e", "dot"),
        ("https://app.example.com/c json", "well-formed"),
        ("https://app.example.com\\@evil.com/c.json", "userinfo"),
        ("https://app.exämple.com/c.json", "well-formed"),
        ("https://" + "a" * 2000 + ".com/c", "too long"),
    ],
)
def test_client_id_urls_breaking_cimd_3_are_refused(url: str, reason: str) -> None:
    """CIMD-2: https, a path, no fragment, no userinfo, no dot segments, no query."""
    with pytest.raises(InvalidDocumentError, match=reason):
        validate_client_id_url(url)


def test_a_valid_document_is_the_registration() -> None:
    result = validate(document(scope="mcp", logo_uri="https://app.example.com/l.png"))
    assert result == {
        "client_id": URL,
        "client_name": "Example",
        "redirect_uris": ["https://app.example.com/callback"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "scope": "mcp",
        "logo_uri": "https://app.example.com/l.png",
    }


@pytest.mark.parametrize("value", [[1], "not an object", None])
def test_the_document_must_be_a_json_object(value: t.Any) -> None:
    with pytest.raises(InvalidDocumentError, match="JSON object"):
        validate(value)


@pytest.mark.parametrize(
    "client_id", [URL + "/", URL.upper(), URL.replace("https", "http"), None, 42]
)
def test_client_id_must_equal_the_url_by_simple_comparison(client_id: t.Any) -> None:
    """CIMD-4."""
    with pytest.raises(InvalidDocumentError, match="client_id differs"):
        validate(document(client_id=client_id) | {"client_id": client_id})


@pytest.mark.parametrize("name", [None, "", 42, "bad\u202ename"])
def test_client_name_is_required_and_printable(name: t.Any) -> None:
    """CIMD-4: client_name present; shown text is printable."""
    doc = document()
    doc["client_name"] = name
    if name is None:
        del doc["client_name"]
    with pytest.raises(InvalidDocumentError, match="client_name"):
        validate(doc)


@pytest.mark.parametrize(
    "uris",
    [None, [], "https://app.example.com/cb", [42], ["http://evil.example.com/cb"]],
)
def test_redirect_uris_are_required_and_follow_the_dcr_rules(uris: t.Any) -> None:
    """CIMD-4 and the DCR rules: at least one acceptable redirect URI."""
    doc = document()
    doc["redirect_uris"] = uris
    if uris is None:
        del doc["redirect_uris"]
    with pytest.raises(InvalidDocumentError, match="redirect"):
        validate(doc)


def test_disallowed_redirect_uris_are_dropped_as_in_dcr() -> None:
    """Decision J1 applies to documents too: the acceptable ones remain."""
    doc = document(
        redirect_uris=[
            "javascript:alert(1)",
            "http://localhost/callback",
            "cursor://anysphere.cursor-mcp/oauth/callback",
        ]
    )
    assert validate(doc)["redirect_uris"] == ["http://localhost/callback"]
    allowed = validate(doc, frozenset({"cursor"}))["redirect_uris"]
    assert allowed == [
        "http://localhost/callback",
        "cursor://anysphere.cursor-mcp/oauth/callback",
    ]


@pytest.mark.parametrize("field", ["client_secret", "client_secret_expires_at"])
def test_a_document_with_a_secret_is_refused(field: str) -> None:
    """CIMD-5."""
    with pytest.raises(InvalidDocumentError, match=field):
        validate(document(**{field: "s3cret"}))


@pytest.mark.parametrize(
    "method",
    ["client_secret_basic", "client_secret_post", "client_secret_jwt", "tls", 1],
)
def test_only_none_and_private_key_jwt_are_accepted(method: t.Any) -> None:
    """CIMD-5: no secret-based token_endpoint_auth_method."""
    with pytest.raises(InvalidDocumentError, match="token_endpoint_auth_method"):
        validate(document(token_endpoint_auth_method=method))


def test_private_key_jwt_requires_keys() -> None:
    with pytest.raises(InvalidDocumentError, match="requires jwks_uri or jwks"):
        validate(document(token_endpoint_auth_method="private_key_jwt"))


def test_private_key_jwt_with_a_jwks_uri_keeps_it() -> None:
    result = validate(
        document(
            token_endpoint_auth_method="private_key_jwt",
            jwks_uri="https://app.example.com/jwks.json",
        )
    )
    assert result["token_endpoint_auth_method"] == "private_key_jwt"
    assert result["jwks_uri"] == "https://app.example.com/jwks.json"


def test_private_key_jwt_with_inline_jwks_keeps_them() -> None:
    jwks = {"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}]}
    result = validate(document(token_endpoint_auth_method="private_key_jwt", jwks=jwks))
    assert result["jwks"] == jwks


def test_jwks_and_jwks_uri_together_are_refused() -> None:
    """RFC 7591 §2: MUST NOT both be present."""
    with pytest.raises(InvalidDocumentError, match="both"):
        validate(
            document(
                token_endpoint_auth_method="private_key_jwt",
                jwks={"keys": []},
                jwks_uri="https://app.example.com/jwks.json",
            )
        )


@pytest.mark.parametrize(
    "jwks_uri", ["http://app.example.com/jwks.json", "https://u@x.com/j", 42, "jwks"]
)
def test_jwks_uri_must_be_https(jwks_uri: t.Any) -> None:
    with pytest.raises(InvalidDocumentError, match="jwks_uri"):
        validate(
            document(token_endpoint_auth_method="private_key_jwt", jwks_uri=jwks_uri)
        )


@pytest.mark.parametrize("jwks", [[], {"keys": "x"}, {"keys": [1]}, {}])
def test_jwks_must_be_a_jwk_set(jwks: t.Any) -> None:
    with pytest.raises(InvalidDocumentError, match="JWK Set"):
        validate(document(token_endpoint_auth_method="private_key_jwt", jwks=jwks))


def test_extra_members_and_grant_types_are_tolerated() -> None:
    """CIMD-13: Claude's document declares jwt-bearer; unknown members ignored."""
    result = validate(
        document(
            grant_types=[
                "authorization_code",
                "refresh_token",
                "urn:ietf:params:oauth:grant-type:jwt-bearer",
            ],
            software_statement="ignored",
            x_vendor={"nested": True},
            logo_uri="javascript:alert(1)",  # a bad optional member is dropped
        )
    )
    assert result["grant_types"] == ["authorization_code", "refresh_token"]
    assert "x_vendor" not in result
    assert "logo_uri" not in result


def test_grant_types_must_be_a_list_of_strings() -> None:
    with pytest.raises(InvalidDocumentError, match="grant_types"):
        validate(document(grant_types="authorization_code"))


def test_a_malformed_scope_is_refused() -> None:
    with pytest.raises(InvalidDocumentError, match="scope"):
        validate(document(scope='mcp "quoted"'))


def test_the_fingerprint_follows_redirect_uris_and_keys_only() -> None:
    """CIMD-16: what consent depends on."""
    base = validate(document())
    renamed = validate(document(client_name="Renamed"))
    moved = validate(document(redirect_uris=["https://app.example.com/other"]))
    keyed = validate(
        document(
            token_endpoint_auth_method="private_key_jwt",
            jwks_uri="https://app.example.com/jwks.json",
        )
    )
    assert document_fingerprint(base) == document_fingerprint(renamed)
    assert document_fingerprint(base) != document_fingerprint(moved)
    assert document_fingerprint(base) != document_fingerprint(keyed)


@pytest.mark.parametrize(
    ("uris", "expected"),
    [
        (["http://localhost/callback", "http://127.0.0.1:3000/cb"], True),
        (["http://localhost/callback", "https://app.example.com/cb"], False),
        ([], False),
    ],
)
def test_all_loopback(uris: list[str], expected: bool) -> None:
    """CIMD-11: the warning is for documents listing only loopback URIs."""
    assert all_loopback(uris) is expected
