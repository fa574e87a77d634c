"""RFC 7591 §2 client metadata: one `validate_<field>()` per registered field.

The registration policy follows decision J1 (docs/decisions.md): disallowed
redirect URIs are dropped and the accepted set is echoed back, unless none is
left. Fields we do not understand are ignored (RFC 7591 §2), and a few harmless
descriptive ones are kept so the consent page can show them.
"""

from __future__ import annotations

import typing as t
import unicodedata
from enum import StrEnum

from proxy.oauth import redirect_uris
from proxy.oauth import scopes
from proxy.oauth import url_syntax
from proxy.oauth.errors import InvalidClientMetadataError
from proxy.oauth.errors import InvalidRedirectUriError

MAX_REDIRECT_URIS = 20


MAX_FIELDS = 64


MAX_TEXT_LENGTH = 512


class AuthMethod(StrEnum):
    NONE = "none"
    CLIENT_SECRET_BASIC = "client_secret_basic"  # noqa: S105
    CLIENT_SECRET_POST = "client_secret_post"  # noqa: S105


SUPPORTED_GRANT_TYPES = ("authorization_code", "refresh_token")


SUPPORTED_RESPONSE_TYPES = ("code",)


# Descriptive fields echoed back and shown on the consent page.
#: Unicode categories never accepted in shown text: Cc control, Cf format,
#: Cs surrogate, Co private use, Cn unassigned.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
_URL_FIELDS = frozenset({"client_uri", "logo_uri", "tos_uri", "policy_uri"})
_TEXT_FIELDS = (
    "client_name",
    "client_uri",
    "logo_uri",
    "tos_uri",
    "policy_uri",
    "software_id",
    "software_version",
    "application_type",
)


def validate(
    metadata: t.Any,
    *,
    private_schemes: frozenset[str],
    catalogued_uris: frozenset[str] = frozenset(),
) -> dict[str, t.Any]:
    """Validate a registration request; return the effective metadata to store.

    `catalogued_uris`: known clients' own private-use redirect URIs, allowed
    without their scheme in `private_schemes` (see redirect_uris).
    """
    if not isinstance(metadata, dict):
        raise InvalidClientMetadataError("The request body must be a JSON object.")
    if len(metadata) > MAX_FIELDS:
        raise InvalidClientMetadataError("Too many metadata fields.")
    result: dict[str, t.Any] = {}
    result["redirect_uris"] = validate_redirect_uris(
        metadata.get("redirect_uris"), private_schemes, catalogued_uris
    )
    result["token_endpoint_auth_method"] = validate_token_endpoint_auth_method(
        metadata.get("token_endpoint_auth_method")
    )
    result["grant_types"] = validate_grant_types(metadata.get("grant_types"))
    result["response_types"] = validate_response_types(metadata.get("response_types"))
    scope = validate_scope(metadata.get("scope"))
    if scope:
        result["scope"] = scope
    for name in _TEXT_FIELDS:
        value = validate_text(name, metadata.get(name))
        if value is not None:
            result[name] = value
    contacts = metadata.get("contacts")
    if contacts is not None:
        if not isinstance(contacts, list) or not all(
            isinstance(c, str) for c in contacts
        ):
            raise InvalidClientMetadataError("'contacts' must be a list of strings.")
        result["contacts"] = [validate_text("contacts", c) for c in contacts[:5]]
    return result


def validate_redirect_uris(
    value: t.Any,
    private_schemes: frozenset[str],
    catalogued_uris: frozenset[str] = frozenset(),
) -> list[str]:
    """redirect_uris: Array of redirection URI strings (RFC 7591 §2).

    Required for the authorization code grant (DCR-7).
    """
    if value is None or value == []:
        raise InvalidRedirectUriError("'redirect_uris' is required.")
    if not isinstance(value, list) or not all(isinstance(u, str) for u in value):
        raise InvalidRedirectUriError("'redirect_uris' must be a list of strings.")
    if len(value) > MAX_REDIRECT_URIS:
        raise InvalidClientMetadataError(
            f"At most {MAX_REDIRECT_URIS} redirect URIs may be registered."
        )
    # DCR-14: stored and echoed byte for byte, in order, without duplicates.
    accepted = [
        uri
        for uri in dict.fromkeys(value)
        if redirect_uris.is_allowed_redirect_uri(uri, private_schemes, catalogued_uris)
    ]
    if not accepted:
        raise InvalidRedirectUriError(
            "No acceptable redirect URI: use https, or http on a loopback host."
        )
    return accepted


def validate_token_endpoint_auth_method(value: t.Any) -> str:
    """RFC 7591 §2: default is client_secret_basic when omitted (DCR-6)."""
    if value is None:
        return AuthMethod.CLIENT_SECRET_BASIC.value
    if not isinstance(value, str) or value not in AuthMethod.__members__.values():
        raise InvalidClientMetadataError(
            "'token_endpoint_auth_method' must be none, client_secret_basic "
            "or client_secret_post."
        )
    return value


def validate_grant_types(value: t.Any) -> list[str]:
    """grant_types: default ["authorization_code"]; we support code and refresh."""
    if value is None:
        return ["authorization_code", "refresh_token"]
    if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
        raise InvalidClientMetadataError("'grant_types' must be a list of strings.")
    unsupported = [g for g in value if g not in SUPPORTED_GRANT_TYPES]
    if unsupported:
        raise InvalidClientMetadataError(
            "Unsupported grant type; supported: authorization_code, refresh_token."
        )
    # RFC 7591 §2.1: authorization_code goes with response type code (DCR-11).
    if "authorization_code" not in value:
        raise InvalidClientMetadataError(
            "'grant_types' must include authorization_code."
        )
    return list(dict.fromkeys(value))


def validate_response_types(value: t.Any) -> list[str]:
    if value is None:
        return ["code"]
    if (
        not isinstance(value, list)
        or value == []
        or not all(r in SUPPORTED_RESPONSE_TYPES for r in value)
    ):
        raise InvalidClientMetadataError("'response_types' must be ['code'].")
    return ["code"]


def validate_scope(value: t.Any) -> str | None:
    """scope: space-separated; empty means absent (SCOPE-4, MCP Inspector)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT_LENGTH:
        raise InvalidClientMetadataError("'scope' must be a space-separated string.")
    if not scopes.is_well_formed(value):
        raise InvalidClientMetadataError("'scope' contains invalid characters.")
    return value


def validate_text(name: str, value: t.Any) -> str | None:
    """Human-readable text, shown on the consent page: printable characters only.

    Controls, format characters (bidi overrides, zero-width joiners: they make
    a name read as another) and lone surrogates (not encodable as UTF-8, so
    every later page showing the name would fail) are refused.
    """
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT_LENGTH:
        raise InvalidClientMetadataError(
            f"'{name}' must be a string of at most {MAX_TEXT_LENGTH} characters."
        )
    if any(unicodedata.category(c) in _UNPRINTABLE for c in value):
        raise InvalidClientMetadataError(
            f"'{name}' contains control, format or surrogate characters."
        )
    if name in _URL_FIELDS and not _is_web_url(value):
        raise InvalidClientMetadataError(f"'{name}' must be an https URL.")
    return value


def _is_web_url(value: str) -> bool:
    """An https URL (http on loopback) that browsers read as we do."""
    scheme = value.partition(":")[0].lower()
    if not url_syntax.is_browser_safe_url(value, need_authority=True):
        return False
    return scheme == "https" or redirect_uris.is_loopback_uri(value)
