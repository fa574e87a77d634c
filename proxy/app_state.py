"""What one app instance holds: settings, store, keys, upstream, client registry."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field

import urllib3

from .clients import ClientRegistry
from .crypto import Keyring
from .gatekeeper import VerifiedTokens
from .settings import Settings
from .signing_keys import SigningKeys
from .store import Store
from .upstream import UpstreamProvider


@dataclass(slots=True)
class AppState:
    settings: Settings
    store: Store
    keyring: Keyring
    signing_keys: SigningKeys
    upstream: UpstreamProvider
    clients: ClientRegistry
    embedded_store: bool
    #: Pooled connections to the MCP backend (gateway mode only).
    backend: urllib3.PoolManager | None = None
    verified_tokens: VerifiedTokens = field(default_factory=VerifiedTokens)
