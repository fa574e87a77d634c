"""GET /oauth2/authorize: OAuth 2.1 §4.1.1, then consent or straight upstream."""

from __future__ import annotations

import typing as t
from urllib.parse import urlsplit

from flask import Blueprint
from flask import Response
from flask import g
from flask import redirect
from flask import render_template
from flask import request
from werkzeug.wrappers import Response as BaseResponse

from proxy.app_state import state
from proxy.clients.registry import consent_fingerprint
from proxy.clients.registry import verified_host
from proxy.front_channel import browser_binding
from proxy.front_channel import remembered_consent
from proxy.front_channel.upstream_redirect import begin_upstream
from proxy.keys.keyring import random_token
from proxy.oauth import authorization_request
from proxy.oauth import scopes
from proxy.oauth.authorization_request import AuthorizationRequest
from proxy.oauth.authorization_request import ResourceOffer
from proxy.oauth.client_id_metadata import all_loopback
from proxy.oauth.errors import NO_STORE
from proxy.oauth.errors import PAGE_HEADERS
from proxy.oauth.redirect_uris import is_loopback_uri
from proxy.oauth.scope_hierarchy import ScopeHierarchy
from proxy.observability.events import current_trace
from proxy.observability.trace import new_trace_id
from proxy.store.records import ClientRecord
from proxy.web.rate_limits import limit_requests

if t.TYPE_CHECKING:
    from proxy.clients.catalog import CatalogEntry
    from proxy.config.settings import Settings
    from proxy.store.records import ClientRecord

bp = Blueprint("authorize", __name__)
limit_requests(bp, "authorize")

CONSENT_FORM_MAX_AGE_SECONDS = 600


@bp.route("/oauth2/authorize", methods=["GET", "POST"])
def authorize() -> BaseResponse:
    app = state()
    # Every authorization attempt is one flow trace, from its first check on.
    trace_id = new_trace_id()
    current_trace.set(trace_id)
    args = request.args if request.method == "GET" else request.form
    client_id = authorization_request.client_id_of(args)
    client = authorization_request.validate_client(
        client_id, app.clients.find(client_id)
    )
    g.client_id = client.client_id  # a known client: its refusals are indexed
    known = app.catalog.identify(client)
    verified = app.clients.identity_verified(client)
    auth_request = authorization_request.validate(
        args,
        client,
        offers=resource_offers(app.settings),
        any_loopback_host=known is not None and known.quirks.loopback_any_host,
    )
    app.events.emit("authorize.received", **_request_fields(auth_request, client))
    browser_id = (
        browser_binding.browser_id(request, app.settings)
        or browser_binding.new_browser_id()
    )

    skipped = _consent_given(auth_request, client, verified=verified, known=known)
    if skipped:
        app.events.emit(
            "consent.skipped", **_request_fields(auth_request, client), reason=skipped
        )
        response = redirect(begin_upstream(app, auth_request, browser_id))
    else:
        response = consent_page(
            auth_request, client, browser_id, known=known, verified=verified
        )
    browser_binding.set_browser_cookie(response, app.settings, browser_id)
    browser_binding.set_trace_cookie(response, app.settings, app.keyring, trace_id)
    response.headers.update(NO_STORE)
    return response


def _request_fields(
    auth_request: AuthorizationRequest, client: ClientRecord
) -> dict[str, t.Any]:
    """What authorize's events say of the request (the audit keeps these on
    consent.shown and consent.skipped, J68)."""
    return {
        "client_id": client.client_id,
        "redirect_uri": auth_request.redirect_uri,
        "scope": auth_request.scope,
        "registered_at": client.client_id_issued_at or None,
    }


def _consent_given(
    auth_request: AuthorizationRequest,
    client: ClientRecord,
    *,
    verified: bool,
    known: CatalogEntry | None,
) -> str | None:
    """Why consent is not asked (trusted client or redirect URI, or this
    browser approved this before); None: ask."""
    app = state()
    # TRUSTED_REDIRECT_URIS: never for a DCR registration, which can copy any
    # redirect URI (decision J15).
    if app.clients.redirect_uri_trusted(client, auth_request.redirect_uri, known=known):
        return "trusted_redirect_uri"
    # TRUSTED_CLIENTS: only a verified identity (MCP 2026-07-28: "a proxy with
    # one static upstream client MUST obtain consent per client").
    if app.catalog.skips_consent(
        client, verified=verified, trusted=app.settings.trusted_clients
    ):
        return "trusted_client"
    approved = _remembered(auth_request, client)
    # CONSENT-7: a wider scope than was approved asks again; an approved
    # broader scope covers the narrower ones it implies (SCOPE-3).
    if approved and not _hierarchy(auth_request.resource).missing(
        approved, scopes.parse(auth_request.scope)
    ):
        return "remembered"
    return None


def resource_offers(settings: Settings) -> tuple[ResourceOffer, ...]:
    """One offer per MCP server: its audience and the scopes it grants."""
    return tuple(
        ResourceOffer(
            resource=server.audience,
            offered_scopes=server.offered_scopes,
            default_scopes=server.scopes,
            step_up_scopes=server.tool_scopes.scopes if server.tool_scopes else (),
        )
        for server in settings.servers
    )


def _remembered(auth_request: AuthorizationRequest, client: ClientRecord) -> list[str]:
    """The scopes this browser approved before for this client and redirect URI."""
    app = state()
    return remembered_consent.remembered_scope(
        request,
        app.settings,
        app.keyring,
        auth_request.client_id,
        auth_request.redirect_uri,
        fingerprint=remembered_consent.resource_fingerprint(
            consent_fingerprint(client),
            auth_request.resource,
            several_servers=len(app.settings.servers) > 1,
        ),
    )


def _hierarchy(resource: str) -> ScopeHierarchy:
    server = state().settings.server_for_resource(resource)
    tool_scopes = server.tool_scopes if server else None
    return tool_scopes.hierarchy if tool_scopes else ScopeHierarchy()


def _already_approved(
    auth_request: AuthorizationRequest, client: ClientRecord
) -> list[str]:
    """Scopes this browser approved before for this client: step-up's consent
    shows only what is added (SEP-835)."""
    approved = _remembered(auth_request, client)
    covered = _hierarchy(auth_request.resource).expand(approved)
    return [s for s in scopes.parse(auth_request.scope) if s in covered]


def consent_page(
    auth_request: AuthorizationRequest,
    client: ClientRecord,
    browser_id: str,
    *,
    known: CatalogEntry | None = None,
    verified: bool = False,
) -> Response:
    """The proxy's own consent page (MCP confused-deputy defence, CONSENT-1/2).

    A catalogued client is named: as itself when `verified` (CIMD URL, static
    client), else only as what its redirect URIs look like.
    """
    app = state()
    app.events.emit(
        "consent.shown",
        **_request_fields(auth_request, client),
        known_client=known.display_name if known else None,
        verified=verified,
    )
    blob = app.keyring.sign(
        {**auth_request.to_dict(), "n": random_token(16), "tr": current_trace.get()},
        purpose="consent",
        max_age=CONSENT_FORM_MAX_AGE_SECONDS,
    )
    redirect_host = (
        urlsplit(auth_request.redirect_uri).hostname or auth_request.redirect_uri
    )
    approved = _already_approved(auth_request, client)
    html = render_template(
        "consent.html",
        client_name=client.client_name,
        client_id=auth_request.client_id,
        # CIMD-11: the document's host is who vouches for a URL client; its
        # name is only what the document says about itself.
        verified_host=verified_host(client),
        all_loopback=verified_host(client) is not None
        and all_loopback(client.redirect_uris),
        redirect_uri=auth_request.redirect_uri,
        redirect_host=redirect_host,
        loopback=is_loopback_uri(auth_request.redirect_uri),
        known_client=known.display_name if known else None,
        known_verified=verified,
        scopes=[s for s in scopes.parse(auth_request.scope) if s not in approved],
        approved_scopes=approved,
        resource=auth_request.resource,
        request_blob=blob,
        csrf_token=browser_binding.csrf_token(app.keyring, browser_id, blob),
    )
    response = Response(html, mimetype="text/html")
    response.headers.update(PAGE_HEADERS)
    return response
