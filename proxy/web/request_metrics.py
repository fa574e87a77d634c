"""Counts and times every request by route name and status (observability/metrics).

The label is the matched route's name (``token.issue_token``), never the raw
path, so a scanner probing random URLs adds one ``unmatched`` series, not one
per URL. The time is to the response headers: a relayed stream's body is not in it.
"""

from __future__ import annotations

import time

from flask import Flask
from flask import Response
from flask import g
from flask import request

from proxy.observability import metrics


def init_app(app: Flask) -> None:
    """Hook the timer in before every other before_request (rate limits included)."""
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.after_request_funcs.setdefault(None, []).append(_observe)


def _start() -> None:
    g.metrics_started = time.perf_counter()


def _observe(response: Response) -> Response:
    started = g.get("metrics_started")
    seconds = time.perf_counter() - started if started is not None else 0.0
    metrics.observe_request(
        request.endpoint, request.method, response.status_code, seconds
    )
    return response
