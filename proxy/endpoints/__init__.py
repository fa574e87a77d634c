"""One blueprint per endpoint; each module is the HTTP layer only."""

from __future__ import annotations

from proxy.endpoints import account
from proxy.endpoints import authorize
from proxy.endpoints import callback
from proxy.endpoints import consent
from proxy.endpoints import forward_auth
from proxy.endpoints import health
from proxy.endpoints import introspect
from proxy.endpoints import metadata
from proxy.endpoints import metrics
from proxy.endpoints import register
from proxy.endpoints import resource
from proxy.endpoints import revoke
from proxy.endpoints import token

BLUEPRINTS = [
    metadata.bp,
    resource.bp,
    register.bp,
    authorize.bp,
    consent.bp,
    callback.bp,
    token.bp,
    revoke.bp,
    introspect.bp,
    health.bp,
    metrics.bp,
    forward_auth.bp,
    account.bp,
]
