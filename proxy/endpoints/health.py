"""GET /healthz (liveness: the process answers) and /readyz (the store answers)."""

from __future__ import annotations

import redis.exceptions
from flask import Blueprint
from flask import Response
from flask import jsonify

from proxy.app_state import state
from proxy.oauth.errors import NO_STORE

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
        response.headers.update(NO_STORE)
        return response
    response = jsonify({"status": "ok", "store": "up"})
    response.headers.update(NO_STORE)
    return response
