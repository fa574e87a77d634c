"""The one way the client rooms read a document from a client's own URL.

Two kinds exist: a Client ID Metadata Document (the client_id URL itself,
draft-ietf-oauth-client-id-metadata-document) and a JWKS (`jwks_uri`, for
`private_key_jwt`, RFC 7523). Both are fetched SSRF-safe and cached in Redis
by :class:`proxy.clients.documents.DocumentCache`; code that needs a document
depends on this protocol only, so it is tested with a dict.
"""

from __future__ import annotations

import typing as t

DocumentKind = t.Literal["client_metadata", "jwks"]


class DocumentError(Exception):
    """A client's document cannot be used; `reason` is safe to show a user.

    The reason names what failed ("the document's client_id differs from its
    URL", "https://example.com/c.json answered 404") and never contains
    anything secret, so it goes on the error page and into the log as is.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DocumentSource(t.Protocol):
    def fetch_json(
        self, url: str, *, kind: DocumentKind, force: bool = False
    ) -> dict[str, t.Any]:
        """The JSON object at `url`, from the cache when fresh.

        `force` skips a fresh cached copy (a JWKS without the `kid` a client
        just used); the implementation bounds how often that really fetches.
        Raises :class:`DocumentError`.
        """
        ...
