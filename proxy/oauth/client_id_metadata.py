"""Client ID Metadata Documents: draft-ietf-oauth-client-id-metadata-document.

A client may name itself by an https URL; the JSON document at that URL is its
registration. This module holds the pure rules: which client ids are such
URLs (§3), and whether a fetched document may be used (§4.1). Fetching and
caching live in ``proxy/clients/``; nothing here does I/O.

Redirect URIs follow exactly the rules DCR applies (``client_metadata``,
decision J1): disallowed ones are dropped and the request must name one that
is left, so a document is refused only when none is acceptable.
"""

from __future__ import annotations

import hashlib
import json
import typing as t
from urllib.parse import urlsplit

from proxy.oauth import client_metadata
from proxy.oauth import redirect_uris
from proxy.oauth import url_syntax
from proxy.oauth.errors import OAuthError

MAX_CLIENT_ID_URL_LENGTH = 2000

#: CIMD §4.1 / MCP: the only methods a document may declare (no shared secret).
DOCUMENT_AUTH_METHODS = ("none", "private_key_jwt")

#: RFC 7591 §2 metadata holding a shared secret; a document MUST NOT carry it.
SECRET_FIELDS = ("client_secret", "client_secret_expires_at")

_DESCRIPTIVE_FIELDS = (
    "client_uri",
    "logo_uri",
    "tos_uri",
    "policy_uri",
    "software_id",
    "software_version",
    "application_type",
)


class InvalidDocumentError(Exception):
    """A client id URL or its document breaks a rule; `reason` says which.

    The reason is plain text a user can report ("the document's client_id
    differs from its URL"). ``proxy/clients`` turns it into a DocumentError.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_metadata_document_url(client_id: str) -> bool:
    """Is this client id in the URL space of CIMD (an https URL)?

    DCR never issues an id starting ``https://`` (DCR-16), so every such id is
    a metadata document URL; :func:`validate_client_id_url` then says whether
    it is a usable one, with a reason the user can report.
    """
    return client_id[:8].lower() == "https://"


def validate_client_id_url(url: str) -> str:
    """CIMD §3 rules for a client identifier URL; returns the URL's host."""
    if len(url) > MAX_CLIENT_ID_URL_LENGTH:
        raise InvalidDocumentError("the client_id URL is too long")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise InvalidDocumentError("the client_id is not a well-formed URL") from None
    # CIMD §3: Client identifier URLs MUST have an "https" scheme.
    if parts.scheme != "https":
        raise InvalidDocumentError("the client_id URL must use https")
    # CIMD §3: MUST NOT contain a username or password.
    if "@" in parts.netloc:
        raise InvalidDocumentError("the client_id URL must not contain userinfo")
    # CIMD §3: MUST NOT contain a fragment component.
    if "#" in url:
        raise InvalidDocumentError("the client_id URL must not contain a fragment")
    # CIMD §3: SHOULD NOT include a query string component (refused here).
    if "?" in url:
        raise InvalidDocumentError("the client_id URL must not contain a query")
    # CIMD §3: Client identifier URLs MUST contain a path component.
    if parts.path in ("", "/"):
        raise InvalidDocumentError("the client_id URL must have a path")
    # CIMD §3: MUST NOT contain single-dot or double-dot path segments.
    if any(_is_dot_segment(s) for s in parts.path.split("/")):
        raise InvalidDocumentError("the client_id URL must not contain dot segments")
    # Only URLs every parser reads alike (no spaces, backslashes, escapes in
    # the host, non-ASCII): the document we fetch is the one the client meant.
    if not url_syntax.is_browser_safe_url(url, need_authority=True):
        raise InvalidDocumentError("the client_id is not a well-formed URL")
    if not parts.hostname:
        raise InvalidDocumentError("the client_id URL has no host")
    return parts.hostname


def validate_document(
    url: str, document: t.Any, *, private_schemes: frozenset[str]
) -> dict[str, t.Any]:
    """The registration a fetched document stands for, or InvalidDocumentError.

    Returns the effective metadata: the members we use, normalised (redirect
    URIs filtered by the DCR rules, grant types limited to the ones we serve),
    plus `jwks` / `jwks_uri` for private_key_jwt. Unknown members are ignored.
    """
    # CIMD §4.1: the document is a JSON object.
    if not isinstance(document, dict):
        raise InvalidDocumentError("the document is not a JSON object")
    result: dict[str, t.Any] = {}
    result["client_id"] = validate_client_id(url, document.get("client_id"))
    result["client_name"] = validate_client_name(document.get("client_name"))
    result["redirect_uris"] = validate_redirect_uris(
        document.get("redirect_uris"), private_schemes
    )
    validate_no_secret(document)
    method = validate_token_endpoint_auth_method(
        document.get("token_endpoint_auth_method")
    )
    result["token_endpoint_auth_method"] = method
    result.update(validate_keys(method, document.get("jwks"), document.get("jwks_uri")))
    result["grant_types"] = validate_grant_types(document.get("grant_types"))
    scope = _as_metadata(client_metadata.validate_scope, document.get("scope"))
    if scope:
        result["scope"] = scope
    for name in _DESCRIPTIVE_FIELDS:
        # Descriptive members are optional: a malformed one is dropped, not
        # fatal (CIMD §4.1 lets documents carry more than we understand).
        try:
            value = client_metadata.validate_text(name, document.get(name))
        except OAuthError:
            continue
        if value is not None:
            result[name] = value
    return result


def validate_client_id(url: str, value: t.Any) -> str:
    # CIMD §4.1: the client_id property MUST match the URL of the document
    # using simple string comparison (CIMD-4).
    if value != url:
        raise InvalidDocumentError("the document's client_id differs from its URL")
    return url


def validate_client_name(value: t.Any) -> str:
    """MCP (CIMD-4): client_name is required; it is shown on the consent page."""
    if value is None or value == "":
        raise InvalidDocumentError("the document has no client_name")
    name = _as_metadata(client_metadata.validate_text, "client_name", value)
    return t.cast(str, name)


def validate_redirect_uris(value: t.Any, private_schemes: frozenset[str]) -> list[str]:
    """CIMD §4.1: redirect_uris is required; each URI passes the DCR rules."""
    if value is None:
        raise InvalidDocumentError("the document has no redirect_uris")
    uris = _as_metadata(client_metadata.validate_redirect_uris, value, private_schemes)
    return t.cast(list[str], uris)


def validate_no_secret(document: dict[str, t.Any]) -> None:
    # CIMD §4.1: the document MUST NOT include client_secret or
    # client_secret_expires_at: a public URL cannot hold a secret (CIMD-5).
    for name in SECRET_FIELDS:
        if name in document:
            raise InvalidDocumentError(f"the document must not contain {name}")


def validate_token_endpoint_auth_method(value: t.Any) -> str:
    """CIMD §4.1: no shared-secret method; absent means `none` (a public client)."""
    if value is None:
        return "none"
    # CIMD §4.1: MUST NOT use client_secret_basic, client_secret_post or
    # client_secret_jwt (CIMD-5); we serve none and private_key_jwt.
    if value not in DOCUMENT_AUTH_METHODS:
        raise InvalidDocumentError(
            "token_endpoint_auth_method must be none or private_key_jwt"
        )
    return t.cast(str, value)


def validate_keys(method: str, jwks: t.Any, jwks_uri: t.Any) -> dict[str, t.Any]:
    """RFC 7591 §2 jwks / jwks_uri: the client's public keys, for private_key_jwt."""
    result: dict[str, t.Any] = {}
    # RFC 7591 §2: jwks_uri and jwks MUST NOT both be present.
    if jwks is not None and jwks_uri is not None:
        raise InvalidDocumentError("the document has both jwks and jwks_uri")
    if jwks_uri is not None:
        # RFC 7591 §2 / CIMD §6.5: the key set is fetched over https only.
        if not (
            isinstance(jwks_uri, str)
            and jwks_uri[:8].lower() == "https://"
            and url_syntax.is_browser_safe_url(jwks_uri, need_authority=True)
            and "#" not in jwks_uri
        ):
            raise InvalidDocumentError("jwks_uri must be an https URL")
        result["jwks_uri"] = jwks_uri
    if jwks is not None:
        keys = jwks.get("keys") if isinstance(jwks, dict) else None
        if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
            raise InvalidDocumentError("jwks must be a JWK Set: {'keys': [...]}")
        result["jwks"] = jwks
    # RFC 7523 §2.2: private_key_jwt is verified with the client's keys.
    if method == "private_key_jwt" and not result:
        raise InvalidDocumentError("private_key_jwt requires jwks_uri or jwks")
    return result


def validate_grant_types(value: t.Any) -> list[str]:
    """The grant types we serve, of those declared (CIMD-13).

    Others (Claude declares jwt-bearer) are tolerated and ignored; each request
    is checked against what is left. Absent: both, as for DCR.
    """
    if value is None:
        return list(client_metadata.SUPPORTED_GRANT_TYPES)
    if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
        raise InvalidDocumentError("grant_types must be a list of strings")
    return [g for g in client_metadata.SUPPORTED_GRANT_TYPES if g in value]


def document_fingerprint(metadata: dict[str, t.Any]) -> str:
    """What consent depends on: the redirect URIs and the keys (CIMD-16).

    Consent remembered under one fingerprint does not carry over to a
    document whose redirect_uris, jwks or jwks_uri changed.
    """
    relevant = {
        "redirect_uris": metadata.get("redirect_uris"),
        "jwks": metadata.get("jwks"),
        "jwks_uri": metadata.get("jwks_uri"),
    }
    text = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def all_loopback(uris: t.Iterable[str]) -> bool:
    """CIMD-11: only loopback redirect URIs, so anyone could host this document."""
    listed = list(uris)
    return bool(listed) and all(redirect_uris.is_loopback_uri(u) for u in listed)


def _is_dot_segment(segment: str) -> bool:
    """`.` or `..`, also percent-encoded (RFC 3986 §6.2.2.2 decodes `%2E`)."""
    return segment.lower().replace("%2e", ".") in (".", "..")


def _as_metadata(rule: t.Callable[..., t.Any], *args: t.Any) -> t.Any:
    """Run a DCR metadata rule; its error becomes a document error."""
    try:
        return rule(*args)
    except OAuthError as exc:
        raise InvalidDocumentError(
            f"{exc.description[:1].lower()}{exc.description[1:].rstrip('.')}"
        ) from None
