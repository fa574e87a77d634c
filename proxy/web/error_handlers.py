"""The app-wide error handlers: every OAuthError, Redis outages, HTTP errors.

Flask looks handlers up along the exception's MRO, so one handler on
:class:`OAuthError` serves every subclass. A redirect is answered only when the
error carries a validated ``redirect_uri``; otherwise JSON, or an HTML page for
a browser on the authorize, consent and callback endpoints. Always ``no-store``.
"""

from __future__ import annotations

import logging

import redis.exceptions
from flask import Flask
from flask import Response
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from proxy.app_state import state
from proxy.oauth.errors import NO_STORE
from proxy.oauth.errors import PAGE_HEADERS
from proxy.oauth.errors import OAuthError
from proxy.oauth.errors import ServerError
from proxy.oauth.errors import TemporarilyUnavailableError
from proxy.oauth.errors import add_query
from proxy.observability import metrics
from proxy.store.faults import unavailable_cause

log = logging.getLogger(__name__)


#: OAuthError reasons that mean a redirect URI was refused (authorize, token).
REDIRECT_URI_REASONS = frozenset({"redirect_mismatch", "redirect_repeated"})


def wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" or not request.accept_mimetypes.accept_html


def render_error(exc: OAuthError, issuer: str) -> BaseResponse:
    """Turn an OAuthError into its response: a redirect only when validated."""
    log.info("oauth error %s (%r) on %r", exc.error, exc.reason, request.path)
    if exc.reason in REDIRECT_URI_REASONS or exc.error == "invalid_redirect_uri":
        state().events.emit(
            "redirect_uri.refused",
            outcome="refused",
            where=request.blueprint,
            reason=exc.reason,
        )
    if exc.redirect_uri:
        location = add_query(
            exc.redirect_uri,
            {
                "error": exc.error,
                "error_description": exc.description or None,
                "state": exc.state,
                # RFC 9207 §2: iss on every authorization response, errors too.
                "iss": issuer,
            },
        )
        response = redirect(location, code=303 if request.method == "POST" else 302)
        response.headers.update(NO_STORE)
        response.headers["Referrer-Policy"] = "no-referrer"
        return response
    if request.blueprint in ("authorize", "consent", "callback") and not wants_json():
        response = Response(
            render_template("error.html", error=exc.error, description=exc.description),
            status=exc.status_code,
            mimetype="text/html",
        )
        response.headers.update(PAGE_HEADERS)
    else:
        response = jsonify(exc.body())
        response.status_code = exc.status_code
    response.headers.update(exc.headers())
    return response


def init_app(app: Flask, issuer: str) -> None:
    """Register handlers: OAuthError (all subclasses), Redis outages, HTTP errors."""

    @app.errorhandler(OAuthError)
    def _oauth_error(exc: OAuthError) -> BaseResponse:
        return render_error(exc, issuer)

    # Outages, failovers, overload and a store refusing writes (OOM under
    # noeviction, READONLY, MISCONF): retryable, so 503, never a 500. A
    # ResponseError from a bug in our own commands stays a 500.
    @app.errorhandler(redis.exceptions.RedisError)
    def _store_down(exc: redis.exceptions.RedisError) -> BaseResponse:
        cause = unavailable_cause(exc)
        if cause is None:
            return _unexpected(exc)
        log.warning("store unavailable (%s): %s", cause, exc.__class__.__name__)
        metrics.REDIS_ERRORS.labels(cause=cause).inc()
        error = TemporarilyUnavailableError(
            "The service is temporarily unavailable, retry shortly.",
            reason=f"redis_{cause}",
        )
        return render_error(error, issuer)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> BaseResponse:
        code = exc.code or 500
        body = {"error": "invalid_request" if code < 500 else "server_error"}
        if code == 413 and request.blueprint == "register":
            # RFC 7591 §3.2.2: a registration error is invalid_client_metadata.
            code, body = 400, {"error": "invalid_client_metadata"}
        elif code == 404:
            body = {"error": "not_found"}
        elif code == 405:
            body = {
                "error": "invalid_request",
                "error_description": "Method not allowed.",
            }
        response = jsonify(body)
        response.status_code = code
        response.headers.update(NO_STORE)
        if code == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> BaseResponse:
        log.exception("unhandled error on %r", request.path)
        return render_error(ServerError("Internal error.", reason="unhandled"), issuer)
