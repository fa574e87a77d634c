"""Counts and times every request by route name and status (observability/metrics).

The label is the matched route's name (``token.issue_token``), never the raw
path, so a scanner probing random URLs adds one ``unmatched`` series, not one
per URL. The time is to the response headers: a relayed stream's body is not in it.

A WSGI wrapper around the Flask app rather than a before/after_request pair:
Flask runs each hook through ``ensure_sync`` and the pair read ``g`` and
``request`` through their proxies, 42 K instructions per request (callgrind,
in-process ``GET /.well-known/oauth-authorization-server``), more than the
counter and histogram themselves.
"""

from __future__ import annotations

import time
import typing as t

from flask import Flask

from proxy.observability import metrics

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment


def init_app(app: Flask) -> None:
    """Time every request from the moment the app is called."""
    app.wsgi_app = RequestTimer(app.wsgi_app)  # type: ignore[method-assign]


class RequestTimer:
    """Observes each request when its response starts (status and headers)."""

    def __init__(self, wsgi_app: WSGIApplication) -> None:
        self.wsgi_app = wsgi_app

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        started = time.perf_counter()

        def observed(status: str, headers: t.Any, exc_info: t.Any = None) -> t.Any:
            _observe(environ, status, time.perf_counter() - started)
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, observed)


def _observe(environ: WSGIEnvironment, status: str, seconds: float) -> None:
    # The request Flask made for this environ, which holds the matched rule.
    rule = getattr(environ.get("werkzeug.request"), "url_rule", None)
    code = status[:3]
    metrics.observe_request(
        rule.endpoint if rule is not None else None,
        environ.get("REQUEST_METHOD", ""),
        int(code) if code.isdigit() else 0,
        seconds,
    )
