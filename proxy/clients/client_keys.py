"""A client's public keys for `private_key_jwt` (RFC 7591 §2 `jwks` / `jwks_uri`).

Inline `jwks` comes from the client's registration or metadata document;
`jwks_uri` is read through a :class:`DocumentSource` (SSRF-safe, cached in
Redis, shared by every worker). When an assertion names a `kid` the cached
set lacks, the client has probably rotated its keys: the set is read once
more with `force=True`, which the source rate-limits, so a stream of made-up
`kid`s cannot make us fetch the client's URL on every request. A URL client's
inline `jwks` sits in its metadata document, which changes the same way, so
its document is read again likewise; a registration's `jwks` never is.

Each worker remembers where the clients it served keep their keys (which
`jwks_uri`, not the keys), so the token endpoint's first round trip can read
the cached JWKS beside the client (J71). A client that moved its `jwks_uri`
costs one read more, once per worker: the client's record or document, as
the request reads it, always names the set that is used.

Bad key material is the client's fault: it is `invalid_client` with a reason
(logged, and readable by the operator), never a 500.
"""

from __future__ import annotations

import dataclasses
import logging
import typing as t
from collections import OrderedDict

from proxy.clients.document_source import DocumentError
from proxy.oauth import client_assertion
from proxy.oauth.client_assertion import ClientKeySet
from proxy.oauth.client_assertion import InvalidJWKSError
from proxy.oauth.client_assertion import UnknownKeyError
from proxy.oauth.client_assertion import VerifiedAssertion
from proxy.oauth.client_id_metadata import is_metadata_document_url
from proxy.oauth.errors import InvalidClientError
from proxy.store.documents import document_id

if t.TYPE_CHECKING:
    from proxy.clients.document_source import DocumentSource
    from proxy.store.records import ClientRecord

log = logging.getLogger(__name__)

_FAILED = "Client authentication failed."

#: Clients whose `jwks_uri` a worker remembers (the least recently used go):
#: a client id (up to 2,000 characters) and a 37-character document id each.
JWKS_URIS_REMEMBERED = 4096


class ClientKeys:
    """Reads a client's key set from its record or its `jwks_uri`."""

    def __init__(self, documents: DocumentSource | None) -> None:
        #: None until the document cache is wired in: `jwks_uri` is then refused.
        self.documents = documents
        #: client id -> document id of the `jwks_uri` it named last here.
        self._jwks_documents: OrderedDict[str, str] = OrderedDict()

    def jwks_document_of(self, client_id: str) -> str | None:
        """The document id of the `jwks_uri` this client named when this worker
        last looked for its keys: a guess to read ahead, never a key source."""
        return self._jwks_documents.get(client_id)

    def _remember(self, client_id: str, uri: str | None) -> None:
        """Where the client keeps its keys now; None: not behind a URI."""
        if uri is None:
            self._jwks_documents.pop(client_id, None)
            return
        self._jwks_documents[client_id] = document_id("jwks", uri)
        self._jwks_documents.move_to_end(client_id)
        while len(self._jwks_documents) > JWKS_URIS_REMEMBERED:
            self._jwks_documents.popitem(last=False)

    def key_set(self, client: ClientRecord, *, force: bool = False) -> ClientKeySet:
        """The client's public keys; InvalidClientError when there are none usable."""
        metadata = client.metadata
        if "jwks" in metadata:
            self._remember(client.client_id, None)
            return _parse(metadata["jwks"], client.client_id, "jwks")
        uri = metadata.get("jwks_uri")
        if not isinstance(uri, str):
            self._remember(client.client_id, None)
            raise InvalidClientError(
                "The client has no keys registered.", reason="no_client_keys"
            )
        if self.documents is None:
            raise InvalidClientError(_FAILED, reason="jwks_uri_unavailable")
        self._remember(client.client_id, uri)
        try:
            document = self.documents.fetch_json(uri, kind="jwks", force=force)
        except DocumentError as exc:
            log.warning("jwks_uri of %s unusable: %s", client.client_id[:48], exc)
            raise InvalidClientError(_FAILED, reason="jwks_uri_failed") from None
        return _parse(document, client.client_id, "jwks_uri")

    def verify(
        self,
        client: ClientRecord,
        assertion: str,
        *,
        audiences: t.Collection[str],
        now: int,
        max_lifetime_seconds: int,
    ) -> VerifiedAssertion:
        """Verify `assertion` with the client's keys, re-reading them once on a
        `kid` they lack (only a `jwks_uri` can have changed since)."""

        def check(keys: ClientKeySet) -> VerifiedAssertion:
            return client_assertion.verify(
                assertion,
                client_id=client.client_id,
                audiences=audiences,
                keys=keys,
                now=now,
                max_lifetime_seconds=max_lifetime_seconds,
            )

        try:
            return check(self.key_set(client))
        except UnknownKeyError:
            if "jwks" in client.metadata and not self._rereadable(client):
                raise
        if "jwks" in client.metadata:
            log.info("unknown kid for %s: reading its document again", client.client_id)
            client = self._document_again(client)
        else:
            log.info("unknown kid for %s: reading its jwks_uri again", client.client_id)
        return check(self.key_set(client, force=True))

    def _rereadable(self, client: ClientRecord) -> bool:
        """Inline keys that live in a fetched document, which can change too.

        A registration's (DCR, static) `jwks` changes only when re-registered;
        a URL client's comes from its metadata document, which it may update
        to rotate keys just as it would update a `jwks_uri`.
        """
        return self.documents is not None and is_metadata_document_url(client.client_id)

    def _document_again(self, client: ClientRecord) -> ClientRecord:
        """The URL client as its document says now (a forced, rate-limited read)."""
        if self.documents is None:
            raise InvalidClientError(_FAILED, reason="document_unavailable")
        try:
            document = self.documents.fetch_json(
                client.client_id, kind="client_metadata", force=True
            )
        except DocumentError as exc:
            log.warning("document of %s unusable: %s", client.client_id[:48], exc)
            raise InvalidClientError(_FAILED, reason="document_failed") from None
        return dataclasses.replace(client, metadata=document)


def _parse(value: t.Any, client_id: str, where: str) -> ClientKeySet:
    try:
        return client_assertion.parse_public_jwks(value)
    except InvalidJWKSError as exc:
        log.warning("%s of %s unusable: %s", where, client_id[:48], exc)
        raise InvalidClientError(_FAILED, reason=f"bad_{where}") from None
