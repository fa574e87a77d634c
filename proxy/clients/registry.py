"""Client lookup: static clients first, then URL client ids (CIMD), then DCR ones.

A URL client id (draft-ietf-oauth-client-id-metadata-document) is never
stored as a registration: its document, fetched and cached by a
DocumentSource, is the registration each time it is needed.

A client an operator disabled (``python -m proxy admin clients disable``) is
refused wherever it is found: an error page at authorize and consent,
``invalid_client`` at token, revoke and introspect (decision J36).
"""

from __future__ import annotations

import typing as t
from urllib.parse import urlsplit

from proxy.clients.document_source import DocumentError
from proxy.clients.document_source import DocumentSource
from proxy.clients.documents import DocumentCache
from proxy.config.settings import Settings
from proxy.oauth.client_id_metadata import InvalidDocumentError
from proxy.oauth.client_id_metadata import document_fingerprint
from proxy.oauth.client_id_metadata import is_metadata_document_url
from proxy.oauth.client_id_metadata import validate_client_id_url
from proxy.oauth.errors import InvalidClientError
from proxy.oauth.errors import UnknownClientError
from proxy.store.documents import document_id
from proxy.store.records import ClientRecord

if t.TYPE_CHECKING:
    from proxy.clients.catalog import CatalogEntry
    from proxy.store import Store


class ClientDisabledError(Exception):
    """The client exists, but an operator disabled it."""


DISABLED_DESCRIPTION = "This client has been disabled by the operator."


def static_records(settings: Settings) -> dict[str, ClientRecord]:
    """Operator-registered clients, as records, built once at start-up."""
    records = {}
    for client in settings.static_clients:
        metadata: dict[str, t.Any] = {"client_name": client.client_name}
        if client.scope:
            metadata["scope"] = client.scope
        method = "client_secret_basic" if client.client_secret_hash else "none"
        if client.jwks is not None:
            metadata["jwks"] = client.jwks
            method = "private_key_jwt"
        elif client.jwks_uri is not None:
            metadata["jwks_uri"] = client.jwks_uri
            method = "private_key_jwt"
        records[client.client_id] = ClientRecord(
            client_id=client.client_id,
            redirect_uris=client.redirect_uris,
            token_endpoint_auth_method=method,
            grant_types=("authorization_code", "refresh_token"),
            client_id_issued_at=0,
            client_secret_hash=client.client_secret_hash,
            metadata=metadata,
        )
    return records


def document_record(metadata: dict[str, t.Any]) -> ClientRecord:
    """A CIMD client as a record: the validated document is its registration."""
    return ClientRecord(
        client_id=metadata["client_id"],
        redirect_uris=tuple(metadata["redirect_uris"]),
        token_endpoint_auth_method=metadata.get("token_endpoint_auth_method", "none"),
        grant_types=tuple(metadata["grant_types"]),
        client_id_issued_at=0,
        metadata=metadata,
    )


class ClientRegistry:
    """Finds clients: static ones from settings, URL ids by their document, DCR."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        documents: DocumentSource | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._static = static_records(settings)
        self.documents: DocumentSource = documents or DocumentCache(
            store.documents,
            settings.client_documents,
            private_schemes=settings.allowed_redirect_schemes,
            limiter=store.limits,
        )

    def find(self, client_id: str) -> ClientRecord | None:
        """The client, None if unknown; an unusable URL client id is a shown error.

        CIMD-10: a document that cannot be fetched or is invalid aborts the
        authorization with an error page (never a redirect: its redirect
        URIs are unknown), saying why.
        """
        try:
            return self._find(client_id)
        except DocumentError as exc:
            raise UnknownClientError(
                _describe(exc.reason), reason="client_document"
            ) from None
        except ClientDisabledError:
            raise UnknownClientError(
                DISABLED_DESCRIPTION, reason="client_disabled"
            ) from None

    def find_for_auth(self, client_id: str, *, basic: bool) -> ClientRecord | None:
        """As :meth:`find`, at token, revoke and introspect: 401 invalid_client."""
        try:
            return self._find(client_id)
        except DocumentError as exc:
            raise InvalidClientError(
                _describe(exc.reason), basic=basic, reason="client_document"
            ) from None
        except ClientDisabledError:
            raise InvalidClientError(
                DISABLED_DESCRIPTION, basic=basic, reason="client_disabled"
            ) from None

    def refuse_if_disabled(self, client_id: str, *, basic: bool) -> None:
        """At the token endpoint, whose first read primed the mark: no round trip."""
        if self._store.disabled_clients.is_disabled(client_id):
            raise InvalidClientError(
                DISABLED_DESCRIPTION, basic=basic, reason="client_disabled"
            )

    def _find(self, client_id: str) -> ClientRecord | None:
        record = self._lookup(client_id)
        if record is not None and self._store.disabled_clients.is_disabled(client_id):
            raise ClientDisabledError(client_id)
        return record

    def _lookup(self, client_id: str) -> ClientRecord | None:
        if client_id in self._static:
            return self._static[client_id]
        if is_metadata_document_url(client_id):
            if not self._settings.client_documents.enabled:
                return None
            return self.document_client(client_id)
        if not self._settings.dynamic_registration:
            return None
        return self._store.load_client(client_id)

    def document_client(self, url: str) -> ClientRecord:
        """CIMD §4: the client a URL client id names; raises DocumentError."""
        try:
            host = validate_client_id_url(url)
        except InvalidDocumentError as exc:
            raise DocumentError(exc.reason) from None
        # CIMD-14: the operator's domain policy, before anything is fetched.
        if not self._settings.client_documents.domain_allowed(host):
            raise DocumentError(
                f"this server does not accept clients from {host} (CIMD_*_DOMAINS)"
            )
        if not self._store.disabled_clients.is_primed(url):
            # The disabled mark and the cached document in one round trip
            # (the token endpoint's first read has already primed both).
            self._store.read_document_client(url, document_id("client_metadata", url))
        return document_record(self.documents.fetch_json(url, kind="client_metadata"))

    def static(self, client_id: str) -> ClientRecord | None:
        return self._static.get(client_id)

    def identity_verified(self, client: ClientRecord) -> bool:
        """Is this client who its record says, or only who it claims to be?

        A static client was named by the operator; a CIMD client's id is the
        URL its document came from, so its host vouches for it. A DCR
        registration is a claim anyone can make.
        """
        if client.client_id in self._static:
            return True
        return is_metadata_document_url(client.client_id)

    def redirect_uri_trusted(
        self, client: ClientRecord, redirect_uri: str, *, known: CatalogEntry | None
    ) -> bool:
        """TRUSTED_REDIRECT_URIS (decision J15): may this client skip consent
        because of where it sends the user back?

        Anyone can register any redirect URI by DCR, and a URL client's
        document can list any too, so the URI alone proves nothing (MCP
        2026-07-28: "a proxy with one static upstream client MUST obtain
        consent per client"). It counts for a static client (the operator
        named both), and for a URL client whose redirect URI is on its
        document's own host, or which the catalog pairs with that URI
        (Claude's claude.ai document and claude.com callback). Never for DCR.
        """
        if redirect_uri not in self._settings.trusted_redirect_uris:
            return False
        if redirect_uri not in client.redirect_uris:
            return False
        if client.client_id in self._static:
            return True
        host = verified_host(client)
        if host is None:
            return False
        if urlsplit(redirect_uri).hostname == host:
            return True
        return known is not None and any(
            pattern.matches(redirect_uri) for pattern in known.redirect_uris
        )


def verified_host(client: ClientRecord) -> str | None:
    """CIMD-11: the host that vouches for a URL client (its document's host)."""
    if not is_metadata_document_url(client.client_id):
        return None
    return urlsplit(client.client_id).hostname


def consent_fingerprint(client: ClientRecord) -> str:
    """CIMD-16: what remembered consent for a URL client is tied to ("" otherwise)."""
    if not is_metadata_document_url(client.client_id):
        return ""
    return document_fingerprint(client.metadata)


def _describe(reason: str) -> str:
    """An error_description a user can report: ASCII, no quotes (RFC 6749 §5.2)."""
    text = f"The client metadata document cannot be used: {reason}."
    printable = (c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else "?" for c in text)
    return "".join(printable)[:400]
