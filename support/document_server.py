"""An https server on 127.0.0.1 serving client documents, with a test CA.

`trustme` makes the CA and a certificate for `localhost` and `127.0.0.1`;
each path answers what its caller set (status, headers, body, a delay, a
dripped body) and every request is counted, so a test can prove a URL was
fetched once, or never, and the benchmark can report how often the proxy's
document cache let a fetch through. Shared by tests/document_server.py (the
pytest fixtures) and bench/documents.py.
"""

from __future__ import annotations

import collections
import json
import ssl
import threading
import time
import typing as t
from dataclasses import dataclass
from dataclasses import field
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

import trustme


@dataclass
class Route:
    body: bytes = b"{}"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    #: Seconds to wait before answering at all.
    delay: float = 0.0
    #: Seconds between bytes of the body (a slow drip), 0 for all at once.
    drip: float = 0.0
    #: Send no Content-Length (close-delimited body).
    chunked: bool = False


class DocumentServer:
    """Serves `Route`s over https; `hits[path]` counts requests per path."""

    def __init__(self, ca: trustme.CA) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        server_cert = ca.issue_cert("localhost", "127.0.0.1")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_cert.configure_cert(context)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: t.Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                with outer._lock:
                    outer.hits[self.path] += 1
                    route = outer.routes.get(self.path, Route(b"not found", 404))
                if route.delay:
                    time.sleep(route.delay)
                try:
                    self.send_response(route.status)
                    for name, value in route.headers.items():
                        self.send_header(name, value)
                    if route.chunked:
                        self.send_header("Connection", "close")
                    else:
                        self.send_header("Content-Length", str(len(route.body)))
                    self.end_headers()
                    if route.drip:
                        for i in range(len(route.body)):
                            self.wfile.write(route.body[i : i + 1])
                            self.wfile.flush()
                            time.sleep(route.drip)
                    else:
                        self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass
                if route.chunked:
                    self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"

    def serve_json(self, path: str, document: t.Any, **route: t.Any) -> str:
        """Serve `document` as JSON at `path`; return its URL."""
        headers = {"Content-Type": "application/json", **route.pop("headers", {})}
        body = json.dumps(document).encode()
        self.routes[path] = Route(body, headers=headers, **route)
        return self.url(path)

    def client_document(
        self, path: str, redirect_uris: list[str], **members: t.Any
    ) -> dict[str, t.Any]:
        """A valid CIMD document for `path` (its client_id is its URL)."""
        return {
            "client_id": self.url(path),
            "client_name": "Example Agent",
            "redirect_uris": redirect_uris,
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            **members,
        }

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
