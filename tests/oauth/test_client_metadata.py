"""proxy/oauth/client_metadata.py: RFC 7591 §2 client metadata, one rule per field."""

from __future__ import annotations

import typing as t

import pytest

from proxy.oauth import client_metadata
from proxy.oauth.client_metadata import validate
from proxy.oauth.errors import InvalidClientMetadataError
from proxy.oauth.errors import InvalidRedirectUriError
from proxy.oauth.errors import OAuthError

NO_SCHEMES: frozenset[str] = frozenset()
LOOPBACK = "http://127.0.0.1:33418/callback"


def _validate(**fields: t.Any) -> dict[str, t.Any]:
    body = {"redirect_uris": [LOOPBACK], **fields}
    return validate(
        {k: v for k, v in body.items() if v is not ...}, private_schemes=NO_SCHEMES
    )


def _error(exc: pytest.ExceptionInfo[OAuthError]) -> str:
    return exc.value.error


def test_minimal_public_client_is_accepted() -> None:
    result = _validate(token_endpoint_auth_method="none")
    assert result["redirect_uris"] == [LOOPBACK]
    assert result["token_endpoint_auth_method"] == "none"
    assert result["grant_types"] == ["authorization_code", "refresh_token"]
    assert result["response_types"] == ["code"]


def test_omitted_auth_method_is_returned_explicitly() -> None:
    """DCR-6: the RFC default client_secret_basic is named in the result."""
    result = _validate()
    assert result["token_endpoint_auth_method"] == "client_secret_basic"


@pytest.mark.parametrize(
    "method", ["none", "client_secret_basic", "client_secret_post"]
)
def test_supported_auth_methods_are_kept(method: str) -> None:
    assert (
        _validate(token_endpoint_auth_method=method)["token_endpoint_auth_method"]
        == method
    )


@pytest.mark.parametrize(
    "method", ["private_key_jwt", "client_secret_jwt", "tls_client_auth", "NONE", "", 1]
)
def test_unknown_auth_method_is_invalid_client_metadata(method: t.Any) -> None:
    """DCR-10: an unknown auth method → invalid_client_metadata."""
    with pytest.raises(InvalidClientMetadataError) as exc:
        _validate(token_endpoint_auth_method=method)
    assert _error(exc) == "invalid_client_metadata"


@pytest.mark.parametrize("body", [{}, {"redirect_uris": []}, {"redirect_uris": None}])
def test_missing_or_empty_redirect_uris_is_invalid_redirect_uri(
    body: dict[str, t.Any],
) -> None:
    """DCR-7: `{}` → invalid_redirect_uri."""
    with pytest.raises(InvalidRedirectUriError) as exc:
        validate(body, private_schemes=NO_SCHEMES)
    assert _error(exc) == "invalid_redirect_uri"


@pytest.mark.parametrize(
    "value", ["https://a.example/cb", [1], [None], {"a": 1}, [["x"]]]
)
def test_redirect_uris_of_the_wrong_type_are_refused(value: t.Any) -> None:
    """DCR-7 / DCR-10: redirect_uris is a list of strings."""
    with pytest.raises(InvalidRedirectUriError):
        validate({"redirect_uris": value}, private_schemes=NO_SCHEMES)


@pytest.mark.parametrize(
    "uri",
    [
        "http://evil.example/cb",
        "https://a.example/cb#x",
        "javascript:alert(1)",
        "data:text/html,x",
        "file:///etc/passwd",
        "vbscript:x",
        "cursor://anysphere.cursor-mcp/oauth/callback",
        "/relative",
    ],
)
def test_only_disallowed_redirect_uris_is_invalid_redirect_uri(uri: str) -> None:
    """DCR-8 / DCR-9: nothing acceptable left → 400 invalid_redirect_uri."""
    with pytest.raises(InvalidRedirectUriError) as exc:
        validate({"redirect_uris": [uri]}, private_schemes=NO_SCHEMES)
    assert _error(exc) == "invalid_redirect_uri"


def test_disallowed_redirect_uris_are_dropped_from_a_mix() -> None:
    """DCR-8 / J1: Cursor's mix keeps the acceptable URIs, in order."""
    result = validate(
        {
            "redirect_uris": [
                "cursor://anysphere.cursor-mcp/oauth/callback",
                "https://www.cursor.com/agents/mcp/oauth/callback",
                "javascript:alert(1)",
                "http://localhost:8787/callback",
            ]
        },
        private_schemes=NO_SCHEMES,
    )
    assert result["redirect_uris"] == [
        "https://www.cursor.com/agents/mcp/oauth/callback",
        "http://localhost:8787/callback",
    ]


def test_allowlisted_private_scheme_is_kept() -> None:
    """DCR-9: an allowlisted reverse-DNS scheme is accepted."""
    uri = "com.example.app:/oauth/callback"
    result = validate(
        {"redirect_uris": [uri]}, private_schemes=frozenset({"com.example.app"})
    )
    assert result["redirect_uris"] == [uri]


@pytest.mark.parametrize(
    "uris",
    [
        ["http://127.0.0.1:33418/"],
        ["http://127.0.0.1:33418"],
        ["https://A.Example/CB?x=1&y=%41"],
        ["https://a.example/cb/", "https://a.example/cb"],
    ],
)
def test_redirect_uris_are_kept_byte_for_byte(uris: list[str]) -> None:
    """DCR-14: stored and echoed with no normalisation."""
    assert (
        validate({"redirect_uris": uris}, private_schemes=NO_SCHEMES)["redirect_uris"]
        == uris
    )


def test_duplicate_redirect_uris_are_kept_once() -> None:
    result = validate(
        {"redirect_uris": [LOOPBACK, LOOPBACK]}, private_schemes=NO_SCHEMES
    )
    assert result["redirect_uris"] == [LOOPBACK]


def test_too_many_redirect_uris_are_refused() -> None:
    uris = [
        f"https://a.example/cb{i}" for i in range(client_metadata.MAX_REDIRECT_URIS + 1)
    ]
    with pytest.raises(InvalidClientMetadataError):
        validate({"redirect_uris": uris}, private_schemes=NO_SCHEMES)


@pytest.mark.parametrize(
    "grant_types",
    [
        ["password"],
        ["authorization_code", "password"],
        ["client_credentials"],
        ["implicit"],
    ],
)
def test_unsupported_grant_types_are_invalid_client_metadata(
    grant_types: list[str],
) -> None:
    """DCR-10: grant_types:["password"] → invalid_client_metadata."""
    with pytest.raises(InvalidClientMetadataError) as exc:
        _validate(grant_types=grant_types)
    assert _error(exc) == "invalid_client_metadata"


@pytest.mark.parametrize("grant_types", [[], ["refresh_token"]])
def test_grant_types_without_authorization_code_are_refused(
    grant_types: list[str],
) -> None:
    """DCR-11: response type `code` needs the authorization_code grant."""
    with pytest.raises(InvalidClientMetadataError):
        _validate(grant_types=grant_types)


@pytest.mark.parametrize("grant_types", ["authorization_code", [1], {"a": 1}])
def test_grant_types_of_the_wrong_type_are_refused(grant_types: t.Any) -> None:
    """DCR-10: wrong JSON types → invalid_client_metadata."""
    with pytest.raises(InvalidClientMetadataError):
        _validate(grant_types=grant_types)


def test_code_only_grant_types_are_kept() -> None:
    assert _validate(grant_types=["authorization_code"])["grant_types"] == [
        "authorization_code"
    ]


@pytest.mark.parametrize(
    "response_types", [["token"], ["code", "token"], ["id_token"], [], "code", [1]]
)
def test_unsupported_response_types_are_invalid_client_metadata(
    response_types: t.Any,
) -> None:
    """DCR-10 / DCR-11: only response type code."""
    with pytest.raises(InvalidClientMetadataError) as exc:
        _validate(response_types=response_types)
    assert _error(exc) == "invalid_client_metadata"


def test_code_response_type_is_kept() -> None:
    assert _validate(response_types=["code"])["response_types"] == ["code"]


def test_unknown_fields_are_ignored() -> None:
    """DCR-13: fields the AS does not understand are ignored."""
    result = _validate(foo="bar", jwks={"keys": []}, post_logout_redirect_uris=["x"])
    assert "foo" not in result
    assert "jwks" not in result
    assert "post_logout_redirect_uris" not in result


def test_descriptive_fields_are_kept() -> None:
    """DCR-13: software_id, client_uri, application_type, ... do not fail."""
    fields = {
        "client_name": "MCP Inspector",
        "client_uri": "https://inspector.example",
        "logo_uri": "https://inspector.example/logo.png",
        "software_id": "mcp-remote",
        "software_version": "0.1.0",
        "application_type": "native",
    }
    result = _validate(**fields)
    for name, value in fields.items():
        assert result[name] == value


@pytest.mark.parametrize(
    "name", ["client_name", "client_uri", "software_id", "application_type"]
)
def test_descriptive_field_of_the_wrong_type_is_refused(name: str) -> None:
    with pytest.raises(InvalidClientMetadataError):
        _validate(**{name: ["not", "a", "string"]})


def test_overlong_text_field_is_refused() -> None:
    with pytest.raises(InvalidClientMetadataError):
        _validate(client_name="x" * (client_metadata.MAX_TEXT_LENGTH + 1))


def test_native_application_with_loopback_redirects_is_accepted() -> None:
    """DCR-15: application_type native with http://127.0.0.1/cb."""
    result = validate(
        {
            "application_type": "native",
            "redirect_uris": ["http://127.0.0.1/cb", "http://localhost/cb"],
            "token_endpoint_auth_method": "none",
        },
        private_schemes=NO_SCHEMES,
    )
    assert result["redirect_uris"] == ["http://127.0.0.1/cb", "http://localhost/cb"]
    assert result["application_type"] == "native"


@pytest.mark.parametrize("scope", ["", None])
def test_empty_scope_means_absent(scope: str | None) -> None:
    """SCOPE-4: MCP Inspector registers scope ""."""
    assert "scope" not in _validate(scope=scope)


def test_scope_is_kept() -> None:
    assert _validate(scope="mcp offline_access")["scope"] == "mcp offline_access"


@pytest.mark.parametrize("scope", [["mcp"], 1, 'bad"scope', "x" * 600])
def test_malformed_scope_is_refused(scope: t.Any) -> None:
    with pytest.raises(InvalidClientMetadataError):
        _validate(scope=scope)


def test_contacts_are_a_list_of_strings() -> None:
    assert _validate(contacts=["a@example.com"])["contacts"] == ["a@example.com"]
    with pytest.raises(InvalidClientMetadataError):
        _validate(contacts="a@example.com")
    with pytest.raises(InvalidClientMetadataError):
        _validate(contacts=[1])


@pytest.mark.parametrize("body", [[], "x", None, 1, ["redirect_uris"]])
def test_non_object_body_is_invalid_client_metadata(body: t.Any) -> None:
    """DCR-10: a body that is not a JSON object."""
    with pytest.raises(InvalidClientMetadataError) as exc:
        validate(body, private_schemes=NO_SCHEMES)
    assert _error(exc) == "invalid_client_metadata"


def test_too_many_fields_are_refused() -> None:
    body = {f"f{i}": i for i in range(client_metadata.MAX_FIELDS + 1)}
    body["redirect_uris"] = [LOOPBACK]
    with pytest.raises(InvalidClientMetadataError):
        validate(body, private_schemes=NO_SCHEMES)
