"""Live HTTP servers for the browser tests: the proxy, a client site, an attacker.

The proxy runs over real HTTP on a free loopback port, in a thread, with
PUBLIC_URL = http://127.0.0.1:<port>, so its cookies drop `__Host-` and Secure
as designed for http loopback. The upstream is oidc-provider-mock (`idp_url`).
A `Site` is a tiny web site on its own port: it serves fixed pages and records
every request it receives (the MCP client's redirect receiver, an attacker).
"""

from __future__ import annotations

import contextlib
import threading
import typing as t
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field

import pytest
import redis
from werkzeug.serving import make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

from proxy import create_app
from proxy.config.settings import Settings

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment

SERVER_STOP_SECONDS = 5.0

DEFAULT_PAGE = (
    "<!doctype html><title>client</title>"
    '<h1 id="received">The client received this request.</h1>'
)


@contextlib.contextmanager
def serve(app: WSGIApplication) -> Iterator[int]:
    """Serve `app` on a free 127.0.0.1 port from a thread; yield the port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.1},
        name=f"live-server-{server.server_port}",
        daemon=True,
    )
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(SERVER_STOP_SECONDS)


@dataclass(frozen=True)
class Hit:
    """One request a `Site` received."""

    method: str
    path: str
    query: dict[str, list[str]]


@dataclass
class Site:
    """A web site on its own loopback port that records what it receives."""

    url: str = ""
    pages: dict[str, str] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> t.Iterable[bytes]:
        request = Request(environ)
        self.hits.append(
            Hit(request.method, request.path, request.args.to_dict(flat=False))
        )
        page = self.pages.get(request.path, DEFAULT_PAGE)
        response = Response(page, mimetype="text/html")
        return response(environ, start_response)

    def queries(self, path: str) -> list[dict[str, list[str]]]:
        return [hit.query for hit in self.hits if hit.path == path]


@dataclass
class LiveProxy:
    """The proxy app served over real HTTP."""

    url: str
    settings: Settings


class _Deferred:
    """A WSGI app filled in once the port (and so PUBLIC_URL) is known."""

    app: WSGIApplication | None = None

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> t.Iterable[bytes]:
        assert self.app is not None
        return self.app(environ, start_response)


@pytest.fixture
def live_proxy(settings: Settings, store_client: redis.Redis) -> Iterator[LiveProxy]:
    """The proxy on http://127.0.0.1:<free port>, upstream = oidc-provider-mock."""
    deferred = _Deferred()
    with serve(deferred) as port:
        url = f"http://127.0.0.1:{port}"
        live = settings.replace(public_url=url, resource=url + "/mcp")
        deferred.app = create_app(live, redis_client=store_client)
        yield LiveProxy(url, live)


@pytest.fixture
def client_site() -> Iterator[Site]:
    """The MCP client's loopback redirect receiver, on http://127.0.0.1:<port>."""
    site = Site()
    with serve(site) as port:
        site.url = f"http://127.0.0.1:{port}"
        yield site


@pytest.fixture
def attacker_site() -> Iterator[Site]:
    """Another site (`localhost`, so another origin and site than the proxy)."""
    site = Site()
    with serve(site) as port:
        site.url = f"http://localhost:{port}"
        yield site
