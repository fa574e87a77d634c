"""The app-wide error handlers: every OAuthError, Redis outages, HTTP errors.

Flask looks handlers up along the exception's MRO, so one handler on
:class:`OAuthError` serves every subclass. A redirect is answered only when the
error carries a validated ``redirect_uri``; otherwise JSON, or an HTML page for
a browser on the authorize, consent, callback and account endpoints. Always
``no-store``.

When the request belongs to a flow trace, the error is recorded as that
trace's failed step, and the page and the redirect carry the trace id (page
text, and ``trace_id`` plus an ``error_description`` suffix on the redirect:
decision J13 in docs/decisions.md) so the user can hand it to the operator.
"""

from __future__ import annotations

import logging
import typing as t

import redis.exceptions
from flask import Flask
from flask import Response
from flask import current_app
from flask import g
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from proxy.app_state import state
from proxy.clients.authentication import presented_client_id
from proxy.oauth.errors import NO_STORE
from proxy.oauth.errors import PAGE_HEADERS
from proxy.oauth.errors import InvalidClientError
from proxy.oauth.errors import InvalidRedirectUriError
from proxy.oauth.errors import OAuthError
from proxy.oauth.errors import ServerError
from proxy.oauth.errors import TemporarilyUnavailableError
from proxy.oauth.errors import TooManyRequestsError
from proxy.oauth.errors import add_query
from proxy.observability import metrics
from proxy.observability.events import current_trace
from proxy.store.faults import unavailable_cause
from proxy.upstream.base import UpstreamError

log = logging.getLogger(__name__)


def wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" or not request.accept_mimetypes.accept_html


#: Browser-facing endpoints: their errors are pages unless JSON is asked for.
_PAGE_BLUEPRINTS = ("authorize", "consent", "callback", "account")


def render_error(exc: OAuthError, issuer: str) -> BaseResponse:
    """Turn an OAuthError into its response: a redirect only when validated."""
    log.info("oauth error %s (%r) on %r", exc.error, exc.reason, request.path)
    trace_id = current_trace.get()
    if exc.redirect_uri:
        description = exc.description
        if trace_id:
            description = f"{description} (trace id: {trace_id})".lstrip()
        location = add_query(
            exc.redirect_uri,
            {
                "error": exc.error,
                "error_description": description or None,
                "state": exc.state,
                # RFC 9207 §2: iss on every authorization response, errors too.
                "iss": issuer,
                # Not a secret, opens nothing: what the user tells the operator.
                "trace_id": trace_id,
            },
        )
        response = redirect(location, code=303 if request.method == "POST" else 302)
        response.headers.update(NO_STORE)
        response.headers["Referrer-Policy"] = "no-referrer"
        return response
    if request.blueprint in _PAGE_BLUEPRINTS and not wants_json():
        response = Response(
            render_template(
                "error.html",
                error=exc.error,
                description=exc.description,
                trace_id=trace_id,
                # /account and its sign-in: say where to go back to.
                account=request.blueprint == "account" or g.get("account_page", False),
            ),
            status=exc.status_code,
            mimetype="text/html",
        )
        response.headers.update(PAGE_HEADERS)
    else:
        response = jsonify(exc.body())
        response.status_code = exc.status_code
    response.headers.update(exc.headers())
    return response


#: Blueprints whose invalid_client is a failed client authentication.
_CLIENT_AUTH_ENDPOINTS = ("token", "revoke", "introspect")


def _presented_client_id() -> str | None:
    """The client id a refused request named, if reading it cannot fail.

    The error may be about the body itself (too large, not a form), so the
    form is read only when it is one and fits; this runs inside the error
    handler, where a second exception would be a 500.
    """
    form: t.Any = {}
    if request.mimetype == "application/x-www-form-urlencoded" and (
        request.content_length or 0
    ) <= (current_app.config["MAX_CONTENT_LENGTH"] or 0):
        try:
            form = request.form
        except HTTPException:
            form = {}
    try:
        named = presented_client_id(request.headers, MultiDict(form))
    except Exception:  # a malformed Basic header or assertion names nobody
        named = None
    return named or request.args.get("client_id")


def emit_refusal(exc: OAuthError) -> None:
    """The event for a refused request, by endpoint: one place for all of them.

    The audit log, the metrics and the flow trace (its failed step) all hear
    it; each refusal is one event, whatever raised it.
    """
    if isinstance(exc, TooManyRequestsError):
        return  # rate.limited was emitted where the limit was checked
    events = state().events
    blueprint = request.blueprint
    reason = exc.reason or exc.error
    outcome = "error" if exc.status_code >= 500 else "refused"
    cause = exc.__cause__
    fields = {
        "error": exc.error,
        "reason": reason,
        # What the IdP answered, said by our own UpstreamError (never a token).
        "detail": str(cause)[:300] if isinstance(cause, UpstreamError) else None,
    }
    if blueprint in ("gateway", "forward_auth"):
        # Not request.form: a gateway body is the MCP message, read by the relay.
        events.emit("gateway.refused", outcome=outcome, **fields)
        return
    client_id = g.get("client_id") or _presented_client_id()
    client_id = client_id[:200] if client_id else None
    if isinstance(exc, InvalidClientError) and blueprint in _CLIENT_AUTH_ENDPOINTS:
        events.emit(
            "client_auth.failed",
            outcome=outcome,
            client_id=client_id,
            where=blueprint,
            reason=reason,
        )
    elif blueprint == "token":
        events.emit(
            "token.refused",
            outcome=outcome,
            client_id=client_id,
            grant_type=request.form.get("grant_type", "")[:64] or None,
            **fields,
        )
    elif blueprint == "register":
        events.emit("client.refused", outcome=outcome, **fields)
    elif blueprint == "authorize":
        events.emit(
            "authorize.refused",
            outcome=outcome,
            client_id=client_id,
            redirect_uri=(request.values.get("redirect_uri") or "")[:500] or None,
            **fields,
        )
    elif blueprint == "consent" and exc.reason != "consent_denied":
        events.emit("consent.refused", outcome=outcome, client_id=client_id, **fields)
    elif blueprint == "account":
        events.emit("account.refused", outcome=outcome, **fields)
    elif blueprint == "callback":
        events.emit(
            "login.refused",
            outcome=outcome,
            upstream_error=(request.args.get("error") or "")[:64] or None,
            upstream_error_description=(
                (request.args.get("error_description") or "")[:300] or None
            ),
            **fields,
        )
    # After the endpoint's own event: a trace's failed step is the endpoint's.
    if isinstance(exc, InvalidRedirectUriError) or reason.startswith("redirect_"):
        events.emit(
            "redirect_uri.refused",
            outcome=outcome,
            client_id=client_id,
            where=blueprint,
            reason=reason,
        )


def init_app(app: Flask, issuer: str) -> None:
    """Register handlers: OAuthError (all subclasses), Redis outages, HTTP errors."""

    @app.errorhandler(OAuthError)
    def _oauth_error(exc: OAuthError) -> BaseResponse:
        try:
            emit_refusal(exc)
        except Exception:  # telling of a refusal must never turn it into a 500
            log.exception("could not record the refusal %s", exc.error)
        return render_error(exc, issuer)

    # Outages, failovers, overload and a store refusing writes (OOM under
    # noeviction, READONLY, MISCONF): retryable, so 503, never a 500. A
    # ResponseError from a bug in our own commands stays a 500.
    @app.errorhandler(redis.exceptions.RedisError)
    @app.errorhandler(redis.exceptions.RedisClusterException)
    def _store_down(exc: Exception) -> BaseResponse:
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
