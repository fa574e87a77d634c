"""What every token grant shares: client authentication, resource check, TTLs.

Each grant reads what it needs in one round trip, validates in Python
(constant-time comparisons), then commits with one atomic script, so a code
or refresh token is spent exactly once however many workers race for it."""

from __future__ import annotations

import logging
import typing as t

from proxy.clients.authentication import ClientCredentials
from proxy.clients.authentication import authenticate
from proxy.oauth.client_id_metadata import is_metadata_document_url
from proxy.oauth.errors import InvalidTargetError
from proxy.oauth.resource_indicators import matches_resource
from proxy.store import ClientInUse
from proxy.store.documents import document_id
from proxy.store.records import ClientRecord
from proxy.store.records import Grant

if t.TYPE_CHECKING:
    from joserfc.jwk import ECKey
    from werkzeug.datastructures import MultiDict

    from proxy.app_state import AppState


log = logging.getLogger(__name__)


LEASE_SLACK_SECONDS = 5


LEASE_POLL_SECONDS = 0.05


def _client(
    app: AppState, credentials: ClientCredentials, stored: ClientRecord | None
) -> ClientRecord:
    """Authenticate the caller against its static or stored registration.

    A URL client id is never stored (DCR-16 keeps the spaces apart): its
    document is its registration (CIMD-12).
    """
    basic = credentials.method == "client_secret_basic"
    static = app.clients.static(credentials.client_id)
    if static is None and is_metadata_document_url(credentials.client_id):
        document = app.clients.find_for_auth(credentials.client_id, basic=basic)
        return authenticate(
            credentials,
            document,
            assertions=app.client_assertions,
            endpoint="/oauth2/token",
        )
    if not app.settings.dynamic_registration:
        stored = None  # with DCR off, earlier dynamic clients are not honoured
    client = authenticate(
        credentials,
        static or stored,
        assertions=app.client_assertions,
        endpoint="/oauth2/token",
    )
    # An operator disabled it: no token, no refresh (the mark was read with
    # the client in the request's first round trip).
    app.clients.refuse_if_disabled(client.client_id, basic=basic)
    return client


def grant_fields(grant: Grant) -> dict[str, str]:
    """Who and which grant an event is about: ids only, the grant id cut
    short as the log lines have it."""
    return {"client_id": grant.client_id, "sub": grant.sub, "grant": grant.grant_id[:8]}


def _document_of(client_id: str) -> str | None:
    """A URL client's document id, so the token endpoint's first round trip
    reads its cached document in place of a `client:` record it cannot have."""
    if not is_metadata_document_url(client_id):
        return None
    return document_id("client_metadata", client_id)


def _client_in_use(app: AppState, client_id: str) -> ClientInUse | None:
    """The registration whose TTL a successful token request slides.

    None for a URL client id: it has no stored registration to keep alive.
    """
    if is_metadata_document_url(client_id):
        return None
    return ClientInUse(client_id, app.settings.client_ttl_seconds)


def _check_resource(form: MultiDict[str, str], grant: Grant) -> None:
    # RFC 8707 §2.2: a resource at the token endpoint must be one that was granted.
    for value in form.getlist("resource"):
        if value and not matches_resource(value, grant.resource):
            raise InvalidTargetError(
                "'resource' was not granted.", reason="res_mismatch"
            )


def _refresh_ttl(app: AppState, grant: Grant, now: int) -> int:
    """Idle TTL, capped by what is left of the grant's absolute lifetime."""
    return max(1, min(app.settings.refresh_token_ttl_seconds, grant.expires_at - now))


class TokenGrant:
    """A grant type of the token endpoint: `issue()` answers one request."""

    GRANT_TYPE: t.ClassVar[str]

    def __init__(self, app: AppState) -> None:
        self.app = app
        #: The ``keys`` record as read with the client and grant (one round trip).
        self.keys_record: str | None = None
        self.keys_read = False
        #: The client, once authenticated in this request.
        self.client: ClientRecord | None = None

    def signing_key(self) -> ECKey:
        """The key to sign with: from the record read in this request's first
        round trip, else read now. Never a key only this worker has cached."""
        if self.keys_read:
            return self.app.signing_keys.active_from(self.keys_record)
        return self.app.signing_keys.active()

    def issue(
        self, form: MultiDict[str, str], credentials: ClientCredentials
    ) -> dict[str, t.Any]:
        raise NotImplementedError
