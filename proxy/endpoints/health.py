"""GET /healthz (liveness: the process answers) and /readyz (the store answers)."""

from __future__ import annotations

import redis.exceptions
from flask import Blueprint
from flask import Response
from flask import jsonify

from .. import state

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def show_liveness() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def show_readiness() -> Response:
    try:
        state().store.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        response = jsonify({"status": "unavailable", "store": "down"})
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response
    return jsonify({"status": "ok", "store": "up"})
