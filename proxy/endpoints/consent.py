"""POST /oauth2/consent: the user's answer to the consent page (CONSENT-3, GEN-3)."""

from __future__ import annotations

from flask import Blueprint
from flask import redirect
from flask import request
from werkzeug.wrappers import Response as BaseResponse

from proxy.app_state import state
from proxy.clients.registry import consent_fingerprint
from proxy.front_channel import browser_binding
from proxy.front_channel import remembered_consent
from proxy.front_channel.upstream_redirect import begin_upstream
from proxy.oauth.authorization_request import AuthorizationRequest
from proxy.oauth.errors import NO_STORE
from proxy.oauth.errors import AccessDeniedError
from proxy.oauth.errors import BadRequestPageError
from proxy.oauth.errors import UnknownClientError
from proxy.observability.trace import enter_trace
from proxy.web.rate_limits import limit_requests

bp = Blueprint("consent", __name__)
limit_requests(bp, "consent")


class ForbiddenPageError(BadRequestPageError):
    """A consent answer without this browser's CSRF token (SEC-3)."""

    status_code = 403


@bp.post("/oauth2/consent")
def answer_consent() -> BaseResponse:
    app = state()
    enter_trace(browser_binding.trace_from_cookie(request, app.settings, app.keyring))
    blob = request.form.get("request", "")
    payload = app.keyring.unsign(blob, purpose="consent")
    if payload is None:
        raise BadRequestPageError(
            "This consent form expired or was altered. Start the connection again.",
            reason="consent_blob",
        )
    browser_id = browser_binding.browser_id(request, app.settings)
    token = request.form.get("csrf_token", "")
    if browser_id is None or not browser_binding.check_csrf(
        app.keyring, browser_id, blob, token
    ):
        raise ForbiddenPageError("The request could not be verified.", reason="csrf")
    enter_trace(payload.get("tr"))
    auth_request = AuthorizationRequest.from_dict(payload)
    client = app.clients.find(auth_request.client_id)
    if client is None:
        raise UnknownClientError(
            "The client is no longer registered.", reason="client_gone"
        )

    action = request.form.get("action")
    if action == "deny":
        app.events.emit(
            "consent.denied",
            outcome="refused",
            client_id=client.client_id,
            redirect_uri=auth_request.redirect_uri,
        )
        # OAuth 2.1 §4.1.2.1: the resource owner denied the request (AUTHZ-13).
        raise AccessDeniedError(
            "The user denied the request.",
            reason="consent_denied",
            redirect_uri=auth_request.redirect_uri,
            state=auth_request.state,
        )
    if action != "approve":
        raise BadRequestPageError("Choose approve or deny.", reason="consent_action")
    app.events.emit(
        "consent.approved",
        client_id=client.client_id,
        redirect_uri=auth_request.redirect_uri,
        scope=auth_request.scope,
    )
    upstream_url = begin_upstream(
        app,
        auth_request,
        browser_id,
        proxy_state=app.keyring.mac(payload["n"], purpose="txn"),
    )
    # GEN-3: a redirect answering a form POST is 303, never 307.
    response = redirect(upstream_url, code=303)
    remembered_consent.remember_consent(
        request,
        response,
        app.settings,
        app.keyring,
        auth_request.client_id,
        auth_request.redirect_uri,
        auth_request.scope,
        fingerprint=remembered_consent.resource_fingerprint(
            consent_fingerprint(client),
            auth_request.resource,
            several_servers=len(app.settings.servers) > 1,
        ),
    )
    response.headers.update(NO_STORE)
    return response
