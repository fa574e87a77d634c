"""One blueprint per endpoint; each module is the HTTP layer only."""

from __future__ import annotations

from . import authorize
from . import callback
from . import consent
from . import forward_auth
from . import health
from . import introspect
from . import metadata
from . import register
from . import resource
from . import revoke
from . import token

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
    forward_auth.bp,
]
