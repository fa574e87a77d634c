"""The client documents of the CIMD and private_key_jwt flows, served over https.

support/document_server.py (the server the tests use) serves them from
127.0.0.1 with a trustme CA; the proxy trusts that CA through SSL_CERT_FILE
and may reach 127.0.0.1 through CIMD_ALLOWED_PRIVATE_HOSTS (stack.py):

- a public client's metadata document (``token_endpoint_auth_method: none``),
  as Claude, VS Code or opencode publish;
- a ``private_key_jwt`` client's document naming a ``jwks_uri``, and that JWK
  Set, as ChatGPT publishes.

Both say ``max-age=3600``, so after the first fetch the proxy answers from its
Redis cache: the flows measure the cached-document cost, and `fetches()`
shows how many requests reached the server over the whole run (one per
document is what the shared cache and its single-flight lock promise).
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from pathlib import Path

import trustme

from support.client_assertions import jwks
from support.client_assertions import private_key
from support.document_server import DocumentServer

from .load import REDIRECT_URI
from .load import FlowClient

CIMD_PATH = "/bench/cimd-client.json"
PKJWT_PATH = "/bench/private-key-jwt-client.json"
PKJWT_JWKS_PATH = "/bench/private-key-jwt-jwks.json"
#: Fresh for an hour: longer than any run, so only the first request fetches.
CACHE_HEADERS = {"Cache-Control": "public, max-age=3600"}


@dataclass
class DocumentHost:
    """The running document server and the two flow clients it identifies."""

    server: DocumentServer
    ca_file: Path
    cimd: FlowClient
    private_key_jwt: FlowClient

    def clients(self) -> dict[str, FlowClient]:
        return {c.kind: c for c in (self.cimd, self.private_key_jwt)}

    def fetches(self) -> dict[str, dict[str, int]]:
        """Requests the server saw, per flow kind and document path."""
        return {
            "cimd": {CIMD_PATH: self.server.hits[CIMD_PATH]},
            "private_key_jwt": {
                path: self.server.hits[path] for path in (PKJWT_PATH, PKJWT_JWKS_PATH)
            },
        }

    def close(self) -> None:
        self.server.close()


def serve_documents(log_dir: Path) -> DocumentHost:
    """A fresh CA (its PEM in `log_dir`, for the proxy's SSL_CERT_FILE), the
    server on a free port and both clients' documents."""
    ca = trustme.CA()
    log_dir.mkdir(parents=True, exist_ok=True)
    ca_file = log_dir / "document-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = DocumentServer(ca)
    cimd_id = _serve_client(server, CIMD_PATH, client_name="bench CIMD client")
    key = private_key("RS256", "bench")
    server.serve_json(PKJWT_JWKS_PATH, jwks(key), headers=CACHE_HEADERS)
    pkjwt_id = _serve_client(
        server,
        PKJWT_PATH,
        client_name="bench private_key_jwt client",
        token_endpoint_auth_method="private_key_jwt",
        token_endpoint_auth_signing_alg="RS256",
        jwks_uri=server.url(PKJWT_JWKS_PATH),
    )
    return DocumentHost(
        server=server,
        ca_file=ca_file,
        cimd=FlowClient("cimd", client_id=cimd_id),
        private_key_jwt=FlowClient("private_key_jwt", client_id=pkjwt_id, key=key),
    )


def _serve_client(server: DocumentServer, path: str, **members: t.Any) -> str:
    document = server.client_document(path, [REDIRECT_URI], **members)
    return server.serve_json(path, document, headers=CACHE_HEADERS)
