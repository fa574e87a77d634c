"""GET /metrics: Prometheus text exposition, for the holder of METRICS_TOKEN.

Served only when ``METRICS_TOKEN`` is set, and only to ``Authorization: Bearer
<METRICS_TOKEN>`` (compared in constant time). Anything else, a wrong token
included, gets the same 404 as an unknown path: no hint that it exists.
"""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import abort
from flask import request

from proxy.app_state import state
from proxy.keys.keyring import equal
from proxy.observability import metrics

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def show_metrics() -> Response:
    token = state().settings.metrics_token
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if not token or scheme.lower() != "bearer" or not equal(presented.strip(), token):
        abort(404)
    response = Response(metrics.render(), mimetype=None)
    response.headers["Content-Type"] = metrics.CONTENT_TYPE
    response.headers["Cache-Control"] = "no-store"
    return response
