"""GET /healthz (liveness: the process answers) and /readyz (store and IdP usable).

Readiness means a login can finish: Redis must answer *and* accept writes.
A Redis at ``maxmemory`` under noeviction, a read-only replica or one whose
RDB save failed answers PING but refuses every write, so /readyz also writes
one tiny key with a short TTL. The 503 names the cause (``out_of_memory``,
``read_only``, ``unreachable``...), never Redis' own message or address.

The IdP counts too: a discovery document that cannot be fetched or names
another issuer than OAUTH_ISSUER fails every login, so /readyz answers 503
with ``upstream`` naming why (``discovery_unreachable``, ``issuer_mismatch``).
That verdict is cached and re-checked at most once a minute in the background
(proxy/upstream/readiness.py); /readyz never waits on the IdP for long.

So does the ``keys`` record: one that no PROXY_SECRET_KEY (current or
previous) opens answers 503 with ``signing_keys: unsealable`` (J32).
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint
from flask import Response
from flask import jsonify

from proxy.app_state import state
from proxy.oauth.errors import NO_STORE
from proxy.observability import metrics
from proxy.store.faults import STORE_ERRORS
from proxy.store.faults import unavailable_cause

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def show_liveness() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def show_readiness() -> Response:
    store = state().store
    try:
        store.ping()
    except STORE_ERRORS as exc:
        return _unavailable("down", exc)
    try:
        store.probe_write(int(time.time() * 1000))
    except STORE_ERRORS as exc:
        return _unavailable("refuses_writes", exc)
    keys_problem = state().signing_keys.problem()
    if keys_problem is not None:
        # J32: a record no PROXY_SECRET_KEY opens keeps this instance out of
        # rotation (its log says which variable to set), never regenerated.
        response = jsonify(
            {"status": "unavailable", "store": "up", "signing_keys": keys_problem}
        )
        response.status_code = 503
        response.headers["Retry-After"] = "30"
        response.headers.update(NO_STORE)
        return response
    upstream = state().upstream_readiness
    verdict = upstream.verdict()
    if not verdict.ready:
        response = jsonify(
            {"status": "unavailable", "store": "up", "upstream": verdict.reason}
        )
        response.status_code = 503
        response.headers["Retry-After"] = "30"
        response.headers.update(NO_STORE)
        return response
    body = {"status": "ok", "store": "up"}
    if upstream.enabled:
        body["upstream"] = "up"
    response = jsonify(body)
    response.headers.update(NO_STORE)
    return response


def _unavailable(store_state: str, exc: Exception) -> Response:
    """503 with Retry-After; the cause is a fixed name, safe to show anyone."""
    cause = unavailable_cause(exc) or "error"
    metrics.REDIS_ERRORS.labels(cause=cause).inc()
    log.warning("not ready: store %s (%s)", store_state, cause)
    response = jsonify({"status": "unavailable", "store": store_state, "cause": cause})
    response.status_code = 503
    response.headers["Retry-After"] = "5"
    response.headers.update(NO_STORE)
    return response
