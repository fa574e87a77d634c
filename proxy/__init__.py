"""mcp-oauth-proxy: an OAuth 2.1 authorization server facade for MCP servers."""

from __future__ import annotations

import logging
import os
import typing as t

import redis
from flask import Flask
from flask import current_app

from .app_state import AppState

if t.TYPE_CHECKING:
    from .settings import Settings
    from .upstream import UpstreamProvider

log = logging.getLogger(__name__)

REDIS_SOCKET_TIMEOUT_SECONDS = 2.0


def create_app(
    settings: Settings | None = None,
    *,
    redis_client: redis.Redis | None = None,
    upstream: UpstreamProvider | None = None,
) -> Flask:
    """Build the WSGI app. Nothing touches Redis or the IdP until a request needs it."""
    from . import errors
    from .clients import ClientRegistry
    from .crypto import Keyring
    from .endpoints import BLUEPRINTS
    from .endpoints.gateway import backend_session
    from .settings import Settings
    from .signing_keys import SigningKeys
    from .store import Store
    from .upstream import OIDCProvider

    if settings is None:
        settings = Settings.from_env(os.environ)
    embedded = False
    if redis_client is None:
        redis_client, embedded = _redis_for(settings)
    store = Store(redis_client, settings.key_prefix)
    keyring = Keyring(settings.secret_key)
    if upstream is None:
        upstream = OIDCProvider(
            issuer=settings.upstream_issuer,
            client_id=settings.upstream_client_id,
            client_secret=settings.upstream_client_secret,
            redirect_uri=settings.url("/oauth2/callback"),
            scopes=settings.upstream_scopes,
            audience=settings.upstream_audience,
            timeout=settings.upstream_timeout_seconds,
        )

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["proxy"] = AppState(
        settings=settings,
        store=store,
        keyring=keyring,
        signing_keys=SigningKeys(store, keyring, settings.signing_key_pem),
        upstream=upstream,
        clients=ClientRegistry(store, settings),
        embedded_store=embedded,
        backend=backend_session() if settings.gateway else None,
    )
    errors.init_app(app, settings.issuer)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    if settings.gateway:
        from .endpoints import gateway

        app.register_blueprint(gateway.create_blueprint(settings))
    return app


def state() -> AppState:
    """The running app's state (settings, store, keys, upstream)."""
    return t.cast(AppState, current_app.extensions["proxy"])


def _redis_for(settings: Settings) -> tuple[redis.Redis, bool]:
    if settings.redis_url:
        client = redis.Redis.from_url(
            settings.redis_url,
            decode_responses=True,
            socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
            health_check_interval=30,
            retry_on_timeout=False,
        )
        return client, False
    import fakeredis

    log.warning(
        "REDIS_URL is not set: using an embedded in-process store. State lives in "
        "this one process only; run a single worker, and set REDIS_URL in production."
    )
    return fakeredis.FakeRedis(decode_responses=True), True
