"""Client authentication at token, revoke and introspect (OAuth 2.1 §2.4).

`none` for public clients; `client_secret_basic` and `client_secret_post`
for clients holding a secret we issued; `private_key_jwt` (RFC 7523 §2.2)
for clients that registered public keys (`jwks` / `jwks_uri`). Never two
methods at once, never credentials in the query string, and a client
registered for `private_key_jwt` authenticates with nothing else."""

from __future__ import annotations

import base64
import binascii
import logging
import time
import typing as t
from dataclasses import dataclass
from urllib.parse import unquote_plus

from proxy.keys.keyring import equal
from proxy.keys.keyring import sha256_hex
from proxy.oauth import client_assertion
from proxy.oauth.client_assertion import LEEWAY_SECONDS
from proxy.oauth.errors import InvalidClientError
from proxy.oauth.errors import InvalidRequestError
from proxy.oauth.params import single
from proxy.store.records import ClientRecord

if t.TYPE_CHECKING:
    from werkzeug.datastructures import Headers
    from werkzeug.datastructures import MultiDict

    from proxy.clients.client_keys import ClientKeys
    from proxy.config.settings import Settings
    from proxy.store import Store

log = logging.getLogger(__name__)

PRIVATE_KEY_JWT = "private_key_jwt"


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """What the caller presented: who it claims to be and how."""

    client_id: str
    secret: str | None
    #: "client_secret_basic" | "client_secret_post" | "private_key_jwt" | "none"
    method: str
    #: The signed JWT of `private_key_jwt`; never logged.
    assertion: str | None = None


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
    if "client_assertion" in form or "client_assertion_type" in form:
        # OAuth 2.1 §2.4: a client MUST NOT use more than one method per request.
        if basic is not None or body_secret is not None:
            raise InvalidRequestError("Use one client authentication method only.")
        return _assertion_credentials(form, body_id)
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


def _assertion_credentials(
    form: MultiDict[str, str], body_id: str | None
) -> ClientCredentials:
    assertion = single(form, "client_assertion")
    if assertion is None:
        raise InvalidRequestError("'client_assertion' is required.")
    client_assertion.validate_assertion_type(single(form, "client_assertion_type"))
    subject = client_assertion.unverified_subject(assertion)
    # RFC 7521 §4.2: client_id is OPTIONAL beside an assertion; the assertion's
    # subject names the client, and a client_id sent with it must agree.
    if subject is None:
        raise InvalidClientError(
            "Client authentication failed.", reason="assertion_no_sub"
        )
    if body_id is not None and body_id != subject:
        raise InvalidClientError(
            "'client_id' does not match the client assertion.",
            reason="assertion_client_id",
        )
    return ClientCredentials(subject, None, PRIVATE_KEY_JWT, assertion=assertion)


class ClientAssertions:
    """Verifies `private_key_jwt` assertions and spends each `jti` once.

    Holds what a check needs beyond the request: our identity (the audience
    an assertion must name), the client's keys, and the store of spent `jti`s.
    """

    def __init__(self, settings: Settings, store: Store, keys: ClientKeys) -> None:
        self.settings = settings
        self.store = store
        self.keys = keys

    def keys_to_read_ahead(self, credentials: ClientCredentials) -> str | None:
        """The document id of the key set an assertion will be checked with,
        when this worker knows where the client keeps it: the token endpoint
        reads it in its first round trip (J71). Only read ahead, never
        trusted: the client's record or document, as this request reads it,
        names the set that is used."""
        if credentials.method != PRIVATE_KEY_JWT:
            return None
        return self.keys.jwks_document_of(credentials.client_id)

    def check(self, client: ClientRecord, assertion: str, *, endpoint: str) -> None:
        """Raise InvalidClientError unless `assertion` authenticates `client`
        at `endpoint` (a path such as ``/oauth2/token``) and was never used."""
        settings = self.settings
        now = int(time.time())
        # RFC 7523 §3 rule 3: the issuer or the token endpoint identifies us;
        # the endpoint actually called (revoke, introspect) does as well.
        audiences = {
            settings.issuer,
            settings.url("/oauth2/token"),
            settings.url(endpoint),
        }
        verified = self.keys.verify(
            client,
            assertion,
            audiences=audiences,
            now=now,
            max_lifetime_seconds=(
                settings.client_documents.assertion_max_lifetime_seconds
            ),
        )
        # OpenID Connect Core §9: "These tokens MUST only be used once". RFC
        # 7523 §3 rule 7: keep used jti values "for the length of time for
        # which the JWT would be considered valid based on the applicable exp".
        ttl = verified.expires_at - now + LEEWAY_SECONDS
        if not self.store.spend_assertion(client.client_id, verified.jti, ttl):
            log.warning("replayed client assertion for %s", client.client_id[:48])
            raise InvalidClientError(
                "Client authentication failed.", reason="assertion_replayed"
            )


def authenticate(
    credentials: ClientCredentials,
    client: ClientRecord | None,
    *,
    assertions: ClientAssertions | None = None,
    endpoint: str = "/oauth2/token",
) -> ClientRecord:
    """Check the presented credentials against the client's registration.

    `assertions` verifies `private_key_jwt`; without it such a client fails.
    """
    basic = credentials.method == "client_secret_basic"
    if client is None:
        # DCR-17: an unknown client gets 401 invalid_client so Claude re-registers.
        raise InvalidClientError(
            "Unknown client.", basic=basic, reason="unknown_client"
        )
    registered_jwt = client.token_endpoint_auth_method == PRIVATE_KEY_JWT
    presented_jwt = credentials.method == PRIVATE_KEY_JWT
    # OAuth 2.1 §2.4: the client uses the method it registered. A key-holding
    # client has no secret to fall back on, and a secret client has no keys:
    # any other pairing is refused, never guessed at. One exception: a public
    # client whose document publishes keys may prove itself with them
    # (ChatGPT's documents say `none`, list keys, and sign when the server
    # advertises private_key_jwt); stronger proof than none is never refused.
    upgraded = presented_jwt and client.is_public and _publishes_keys(client)
    if registered_jwt != presented_jwt and not upgraded:
        raise InvalidClientError(
            "Use the client authentication method this client registered.",
            basic=basic,
            reason="method_mismatch",
        )
    if presented_jwt:
        if assertions is None or credentials.assertion is None:
            raise InvalidClientError(
                "Client authentication failed.", reason="assertion_unverifiable"
            )
        assertions.check(client, credentials.assertion, endpoint=endpoint)
        return client
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


def _publishes_keys(client: ClientRecord) -> bool:
    return "jwks" in client.metadata or "jwks_uri" in client.metadata


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
    if len(values) == 1 and values[0]:
        return values[0]
    # private_key_jwt may leave client_id out: the assertion's subject counts.
    assertions = form.getlist("client_assertion")
    if not values and len(assertions) == 1:
        return client_assertion.unverified_subject(assertions[0])
    return None
