"""mcp-oauth-proxy: an OAuth 2.1 authorization server facade for MCP servers."""

from __future__ import annotations

import functools
import logging
import os
import typing as t

import redis
from flask import Flask

from proxy.app_state import AppState
from proxy.clients import catalog
from proxy.clients.authentication import ClientAssertions
from proxy.clients.client_keys import ClientKeys
from proxy.clients.documents import DocumentCache
from proxy.clients.registry import ClientRegistry
from proxy.config.settings import Settings
from proxy.endpoints import BLUEPRINTS
from proxy.endpoints import gateway
from proxy.keys.keyring import Keyring
from proxy.keys.signing_keys import SigningKeys
from proxy.observability import logging_setup
from proxy.observability import metrics
from proxy.observability import trace
from proxy.observability.audit import AuditLog
from proxy.observability.audit import FlowConsole
from proxy.observability.events import Events
from proxy.resource_server.routes import build_routes
from proxy.resource_server.stream_slots import StreamSlots
from proxy.resource_server.tool_policy import CatalogNames
from proxy.store import Store
from proxy.store import connection
from proxy.upstream.factory import build_provider
from proxy.upstream.readiness import UpstreamReadiness
from proxy.web import error_handlers
from proxy.web import request_context
from proxy.web import request_metrics
from proxy.web.client_ip import request_subject

if t.TYPE_CHECKING:
    from proxy.clients.document_source import DocumentSource
    from proxy.upstream.base import UpstreamProvider

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    redis_client: redis.Redis | None = None,
    upstream: UpstreamProvider | None = None,
    documents: DocumentSource | None = None,
) -> Flask:
    """Build the WSGI app. Nothing touches Redis or the IdP until a request needs it."""
    if settings is None:
        settings = Settings.from_env(os.environ)
    # Idempotent: gunicorn's arbiter did the same; tests build many apps.
    logging_setup.configure(settings.log_level, settings.log_format)
    if redis_client is None:
        redis_client = connection.connect(settings.redis_options)
    # A bad catalog file or TRUSTED_CLIENTS name stops here, before any request.
    client_catalog = catalog.load(settings)
    store = Store(
        redis_client,
        settings.key_prefix,
        replica_acks=settings.redis_options.replica_acks,
    )
    keyring = Keyring(settings.secret_key, settings.previous_secret_keys)
    events = Events()
    if settings.audit_log:
        events.subscribe(AuditLog())
    if settings.flow_log:
        events.subscribe(FlowConsole())
    if documents is None:
        # CIMD documents and jwks_uri key sets: SSRF-safe, cached in Redis; a
        # catalogued vendor's pinned copy serves only when the live fetch fails.
        documents = DocumentCache(
            store.documents,
            settings.client_documents,
            private_schemes=settings.allowed_redirect_schemes,
            fallback=client_catalog.pinned_document,
            events=events,
            limiter=store.limits,
            requester=functools.partial(request_subject, settings.limits),
        )
    if upstream is None:
        # OAUTH_PROVIDER picks the implementation (proxy/upstream/).
        upstream = build_provider(settings)

    app = Flask(__name__, template_folder="web/templates")
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["proxy"] = app_state = AppState(
        settings=settings,
        store=store,
        keyring=keyring,
        signing_keys=SigningKeys(store, keyring, settings.signing_keys, events=events),
        upstream=upstream,
        clients=ClientRegistry(store, settings, documents=documents),
        catalog=client_catalog,
        client_assertions=ClientAssertions(settings, store, ClientKeys(documents)),
        routes=build_routes(settings, events),
        streams=StreamSlots(store.streams, settings.limits)
        if settings.gateway
        else None,
        # /readyz: the discovery document, for providers that have one.
        upstream_readiness=UpstreamReadiness(
            getattr(upstream, "check_discovery", None)
        ),
        events=events,
    )
    app_state.catalog_names = CatalogNames(client_catalog, settings)
    request_context.init_app(app, settings)
    app.teardown_request(lambda _: store.forget_primed())
    app_state.trace = trace.init_app(
        app, app_state.events, store.traces, ttl=settings.trace_ttl_seconds
    )
    if settings.metrics_token:
        # Without METRICS_TOKEN nobody can read /metrics (404): counting
        # every request and event would be work for no reader.
        app_state.events.subscribe(metrics.count_event)
        request_metrics.init_app(app)
    error_handlers.init_app(app, settings.issuer)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    if settings.gateway:
        app.register_blueprint(gateway.create_blueprint(app_state.routes))
    return app
