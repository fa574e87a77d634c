"""RFC 7591 §2 client metadata: one `validate_<field>()` per registered field.

The registration policy follows decision J1 (docs/decisions.md): disallowed
redirect URIs are dropped and the accepted set is echoed back, unless none is
left. Fields we do not understand are ignored (RFC 7591 §2), and a few harmless
descriptive ones are kept so the consent page can show them.

`application_type` (OpenID Connect Registration §2, MCP SEP-837) is `web` or
`native`, recorded and echoed. A `web` client registers only https redirect
URIs on a host that is not loopback; a `native` one loopback http, private-use
schemes or https (RFC 8252 §7.1-7.3). MCP 2026-07-28 clients MUST send it,
but every client before that sends none, and OpenID's default (`web`) would
refuse the loopback and `cursor://` URIs that Claude Code, VS Code, Cursor,
Goose and mcp-remote register. Decision: when the field is absent we infer it
from the redirect URIs that passed the base rules: `native` if any of them is
loopback or a private-use scheme, else `web`. The inferred value fits every
URI by construction, so an absent `application_type` never drops a URI or
turns a client away; an explicit one is enforced like any other metadata
(URIs it forbids are dropped, J1, and nothing left is an error). Decision J11
in docs/decisions.md.

`private_key_jwt` (RFC 7523 §2.2) is registered with the client's public keys:
`jwks_uri` (https) or an inline `jwks` holding public keys only, never both
(RFC 7591 §2). No secret is issued to such a client.
"""

from __future__ import annotations

import typing as t
import unicodedata
from enum import StrEnum
from urllib.parse import urlsplit

from proxy.oauth import client_assertion
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
    PRIVATE_KEY_JWT = "private_key_jwt"


class ApplicationType(StrEnum):
    """OpenID Connect Registration §2 `application_type`."""

    WEB = "web"
    NATIVE = "native"


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
    uris = validate_redirect_uris(
        metadata.get("redirect_uris"), private_schemes, catalogued_uris
    )
    application_type = validate_application_type(metadata.get("application_type"), uris)
    result["redirect_uris"] = redirect_uris_for(application_type, uris)
    result["application_type"] = application_type.value
    method = validate_token_endpoint_auth_method(
        metadata.get("token_endpoint_auth_method")
    )
    result["token_endpoint_auth_method"] = method
    result.update(validate_keys(metadata, method))
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


def validate_application_type(value: t.Any, uris: list[str]) -> ApplicationType:
    """application_type: "native" or "web" (OpenID Connect Registration §2).

    Absent: inferred from the redirect URIs (see the module docstring), never
    OpenID's default `web`, which would refuse the loopback URIs of clients
    that predate the field.
    """
    if value is None:
        if any(_is_native_uri(uri) for uri in uris):
            return ApplicationType.NATIVE
        return ApplicationType.WEB
    if value not in ApplicationType.__members__.values():
        raise InvalidClientMetadataError(
            "'application_type' must be 'native' or 'web'."
        )
    return ApplicationType(value)


def redirect_uris_for(application_type: ApplicationType, uris: list[str]) -> list[str]:
    """The redirect URIs this application type may use; J1: others dropped."""
    if application_type is ApplicationType.NATIVE:
        # RFC 8252 §7: private-use schemes, loopback http, or claimed https.
        return uris
    # OpenID Connect Registration §2: web clients "MUST only register URLs
    # using the https scheme as redirect_uris; they MUST NOT use localhost as
    # the hostname."
    accepted = [uri for uri in uris if _is_web_uri(uri)]
    if not accepted:
        raise InvalidRedirectUriError(
            "A 'web' client registers https redirect URIs on a public host; "
            "use application_type 'native' for loopback or custom schemes."
        )
    return accepted


def _is_native_uri(uri: str) -> bool:
    scheme = uri.partition(":")[0].lower()
    return scheme not in ("http", "https") or redirect_uris.is_loopback_uri(uri)


def _is_web_uri(uri: str) -> bool:
    if uri.partition(":")[0].lower() != "https":
        return False
    try:
        host = urlsplit(uri).hostname or ""
    except ValueError:
        return False
    return not redirect_uris.is_loopback_host(host)


def validate_token_endpoint_auth_method(value: t.Any) -> str:
    """RFC 7591 §2: default is client_secret_basic when omitted (DCR-6)."""
    if value is None:
        return AuthMethod.CLIENT_SECRET_BASIC.value
    if not isinstance(value, str) or value not in AuthMethod.__members__.values():
        raise InvalidClientMetadataError(
            "'token_endpoint_auth_method' must be none, client_secret_basic, "
            "client_secret_post or private_key_jwt."
        )
    return value


def validate_keys(metadata: dict[str, t.Any], method: str) -> dict[str, t.Any]:
    """jwks_uri / jwks: the client's public keys, for private_key_jwt only."""
    jwks, jwks_uri = metadata.get("jwks"), metadata.get("jwks_uri")
    # RFC 7591 §2: "The "jwks_uri" and "jwks" parameters MUST NOT both be
    # present in the same request or response."
    if jwks is not None and jwks_uri is not None:
        raise InvalidClientMetadataError("Send 'jwks' or 'jwks_uri', not both.")
    if method != AuthMethod.PRIVATE_KEY_JWT:
        # Keys serve nothing else here: they are not stored, so no key a
        # client sent by accident is later used to authenticate it.
        return {}
    # RFC 7523 §2.2: the assertion is verified with the client's keys; a
    # private_key_jwt registration without any is unusable.
    if jwks is None and jwks_uri is None:
        raise InvalidClientMetadataError(
            "private_key_jwt needs the client's public keys in 'jwks' or 'jwks_uri'."
        )
    if jwks_uri is not None:
        return {"jwks_uri": validate_jwks_uri(jwks_uri)}
    return {"jwks": validate_jwks(jwks)}


def validate_jwks_uri(value: t.Any) -> str:
    """jwks_uri: "URL string referencing the client's JSON Web Key (JWK) Set"
    (RFC 7591 §2), fetched by us: https on a host a browser reads as we do."""
    if (
        not isinstance(value, str)
        or value.partition(":")[0].lower() != "https"
        or not url_syntax.is_browser_safe_url(value, need_authority=True)
        or "#" in value
    ):
        raise InvalidClientMetadataError("'jwks_uri' must be an https URL.")
    return value


def validate_jwks(value: t.Any) -> dict[str, t.Any]:
    """jwks: "Client's JSON Web Key Set [RFC7517] document value, which
    contains the client's public keys" (RFC 7591 §2)."""
    try:
        client_assertion.parse_public_jwks(value)
    except client_assertion.InvalidJWKSError as exc:
        raise InvalidClientMetadataError(
            f"'jwks' is not usable: {_ascii(str(exc))}."
        ) from None
    return t.cast(dict[str, t.Any], value)


def _ascii(text: str) -> str:
    """An error description is printable ASCII without double quotes."""
    return "".join(c for c in text if " " <= c <= "~" and c not in '"\\')


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
