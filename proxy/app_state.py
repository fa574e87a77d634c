"""What one app instance holds: settings, store, keys, upstream, client registry."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from dataclasses import field

from flask import current_app

from proxy.clients.authentication import ClientAssertions
from proxy.clients.catalog import Catalog
from proxy.clients.registry import ClientRegistry
from proxy.config.settings import Settings
from proxy.keys.keyring import Keyring
from proxy.keys.signing_keys import SigningKeys
from proxy.observability.events import Events
from proxy.observability.trace import TraceSink
from proxy.resource_server.routes import McpRoute
from proxy.resource_server.stream_slots import StreamSlots
from proxy.resource_server.token_cache import VerifiedTokens
from proxy.resource_server.tool_policy import CatalogNames
from proxy.store import Store
from proxy.upstream.base import UpstreamProvider
from proxy.upstream.readiness import UpstreamReadiness


@dataclass(slots=True)
class AppState:
    settings: Settings
    store: Store
    keyring: Keyring
    signing_keys: SigningKeys
    upstream: UpstreamProvider
    clients: ClientRegistry
    #: The known MCP clients (proxy/clients/catalog.json or CLIENT_CATALOG_FILE).
    catalog: Catalog
    #: Verifies private_key_jwt client assertions (keys, spent jti values).
    client_assertions: ClientAssertions
    #: The MCP servers fronted: each its pool and tool policy (create_app).
    routes: tuple[McpRoute, ...] = ()
    verified_tokens: VerifiedTokens = field(default_factory=VerifiedTokens)
    #: The gateway's caps on open streams (gateway mode only).
    streams: StreamSlots | None = None
    #: Where audit, metrics and trace hear what happened (observability/).
    events: Events = field(default_factory=Events)
    #: The flow trace's sink (None when TRACE_TTL_SECONDS is 0).
    trace: TraceSink | None = None
    #: The IdP's discovery verdict /readyz reports (never checked: always ready).
    upstream_readiness: UpstreamReadiness = field(
        default_factory=lambda: UpstreamReadiness(None)
    )
    #: Which clients the tool policy counts as catalogued (set by create_app).
    catalog_names: CatalogNames | None = None

    @property
    def default_route(self) -> McpRoute:
        """The first server's route (the only one without MCP_SERVERS)."""
        return self.routes[0]


def state() -> AppState:
    """The running app's state (settings, store, keys, upstream)."""
    return t.cast(AppState, current_app.extensions["proxy"])
