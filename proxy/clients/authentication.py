"""Client authentication at token, revoke and introspect (OAuth 2.1 §2.4).

`none` for public clients, `client_secret_basic` and `client_secret_post` for
confidential ones; never two methods at once and never credentials in the
query string."""

from __future__ import annotations

import base64
import binascii
import typing as t
from dataclasses import dataclass
from urllib.parse import unquote_plus

from proxy.keys.keyring import equal
from proxy.keys.keyring import sha256_hex
from proxy.oauth.errors import InvalidClientError
from proxy.oauth.errors import InvalidRequestError
from proxy.oauth.params import single
from proxy.store.records import ClientRecord

if t.TYPE_CHECKING:
    from werkzeug.datastructures import Headers
    from werkzeug.datastructures import MultiDict


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """What the caller presented: who it claims to be and how."""

    client_id: str
    secret: str | None
    method: str  # "client_secret_basic" | "client_secret_post" | "none"


def read_credentials(
    form: MultiDict[str, str], headers: Headers, query: MultiDict[str, str]
) -> ClientCredentials:
    """Parse client credentials from a token-endpoint style request."""
    # OAuth 2.1 §2.4.1: credentials MUST NOT be included in the request URI.
    if "client_secret" in query or "client_id" in query:
        raise InvalidRequestError("Client credentials must not be sent in the URI.")
    basic = _parse_basic(headers.get("Authorization", ""))
    body_id = single(form, "client_id")
    body_secret = single(form, "client_secret")
    if basic is not None:
        # OAuth 2.1 §2.4: a client MUST NOT use more than one method per request.
        if body_secret is not None:
            raise InvalidRequestError("Use one client authentication method only.")
        client_id, secret = basic
        if body_id is not None and body_id != client_id:
            raise InvalidRequestError(
                "'client_id' does not match the Basic credentials."
            )
        return ClientCredentials(client_id, secret, "client_secret_basic")
    if body_id is None:
        raise InvalidRequestError("'client_id' is required.")
    if body_secret is not None:
        return ClientCredentials(body_id, body_secret, "client_secret_post")
    return ClientCredentials(body_id, None, "none")


def authenticate(
    credentials: ClientCredentials, client: ClientRecord | None
) -> ClientRecord:
    """Check the presented credentials against the client's registration."""
    basic = credentials.method == "client_secret_basic"
    if client is None:
        # DCR-17: an unknown client gets 401 invalid_client so Claude re-registers.
        raise InvalidClientError(
            "Unknown client.", basic=basic, reason="unknown_client"
        )
    if client.is_public:
        if credentials.secret is not None:
            raise InvalidClientError(
                "This client is public: send no secret.",
                basic=basic,
                reason="secret_for_public",
            )
        return client
    if credentials.secret is None or client.client_secret_hash is None:
        raise InvalidClientError(
            "Client authentication failed.", basic=basic, reason="missing_secret"
        )
    if not equal(sha256_hex(credentials.secret), client.client_secret_hash):
        raise InvalidClientError(
            "Client authentication failed.", basic=basic, reason="bad_secret"
        )
    return client


def _parse_basic(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    # ValueError: base64 of non-ASCII text; UnicodeDecodeError: not UTF-8.
    except (binascii.Error, ValueError):
        raise InvalidClientError("Malformed Basic credentials.", basic=True) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise InvalidClientError("Malformed Basic credentials.", basic=True)
    # OAuth 2.1 §2.4.1: both parts are form-urlencoded before base64 (TOK-4).
    return unquote_plus(client_id), unquote_plus(secret)


def presented_client_id(headers: Headers, form: MultiDict[str, str]) -> str | None:
    """The client id a request claims (unverified), for rate limiting only."""
    try:
        basic = _parse_basic(headers.get("Authorization", ""))
    except InvalidClientError:
        basic = None
    if basic is not None:
        return basic[0] or None
    values = form.getlist("client_id")
    return values[0] if len(values) == 1 and values[0] else None
