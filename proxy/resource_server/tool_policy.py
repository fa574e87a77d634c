"""The tool policy at the gateway: the live policy, and who the caller is.

Everything here is in memory: the policy is re-read from its file when the
file changes (checked at most once a second per worker, one `stat`), and the
caller comes from the verified access token alone, groups included (the
claims TOOL_POLICY_CLAIMS copies into grants and tokens at login). Nothing on
the gateway path asks Redis.
"""

from __future__ import annotations

import logging
import threading
import time
import typing as t
from collections import OrderedDict

from proxy.config.env import ConfigError
from proxy.config.tool_rules import read_policy
from proxy.oauth.tool_policy import Caller
from proxy.oauth.tool_policy import ToolPolicy

if t.TYPE_CHECKING:
    from proxy.clients.catalog import Catalog
    from proxy.config.settings import Settings
    from proxy.config.tool_rules import RulesSource
    from proxy.oauth.access_tokens import AccessClaims
    from proxy.observability.events import Events

log = logging.getLogger(__name__)

#: How often a worker looks at the policy file's mtime.
RELOAD_CHECK_SECONDS = 1.0


class LivePolicy:
    """The policy in force: the start-up one, then each good re-read of its file.

    A file that turns bad (or disappears) keeps the last good policy and logs
    an ERROR naming the cause, once per change of the file.
    """

    def __init__(
        self,
        source: RulesSource,
        policy: ToolPolicy,
        *,
        events: Events | None = None,
        clock: t.Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self._policy = policy
        self._events = events
        self._clock = clock
        self._stamp = source.stamp()
        self._checked_at = clock()
        self._lock = threading.Lock()

    def current(self) -> ToolPolicy:
        now = self._clock()
        if now - self._checked_at < RELOAD_CHECK_SECONDS:
            return self._policy
        with self._lock:
            if now - self._checked_at >= RELOAD_CHECK_SECONDS:
                self._checked_at = now
                stamp = self.source.stamp()
                if stamp != self._stamp:
                    self._stamp = stamp
                    self._reload()
        return self._policy

    def _reload(self) -> None:
        try:
            self._policy = read_policy(self.source)
        except ConfigError as exc:
            log.error("tool policy not reloaded, the last good one stays: %s", exc)  # noqa: TRY400
            self._emit("error", reason="policy_invalid")
            return
        log.info("tool policy reloaded from %s", self.source.where)
        self._emit("ok", rules=len(self._policy.rules))

    def _emit(self, outcome: str, **fields: t.Any) -> None:
        if self._events is not None:
            self._events.emit("gateway.policy_reloaded", outcome=outcome, **fields)


class CatalogNames:
    """The catalog name of a client id, when its identity is verified; cached.

    Verified means what the consent page trusts (proxy/clients/catalog.py): a
    URL client id (CIMD) the catalog lists, or an operator's static client
    whose redirect URIs are one catalogued client's. A DCR registration is
    never catalogued here: anyone can copy a known client's redirect URIs.
    Decided from the client id and settings alone: no Redis.
    """

    MAX_ENTRIES = 4096

    def __init__(self, catalog: Catalog, settings: Settings) -> None:
        self._catalog = catalog
        self._static = {c.client_id: c for c in settings.static_clients}
        self._names: OrderedDict[str, str | None] = OrderedDict()
        self._lock = threading.Lock()

    def name_of(self, client_id: str) -> str | None:
        try:
            return self._names[client_id]
        except KeyError:
            pass
        entry = None
        static = self._static.get(client_id)
        if static is not None:
            entry = self._catalog.identify_redirect_uris(static.redirect_uris)
        elif client_id.startswith("https://"):
            entry = self._catalog.identify_url(client_id)
        name = entry.name if entry is not None else None
        with self._lock:
            self._names[client_id] = name
            while len(self._names) > self.MAX_ENTRIES:
                self._names.popitem(last=False)
        return name


def caller_of(
    claims: AccessClaims, settings: Settings, catalog: CatalogNames | None
) -> Caller:
    """The policy's view of the caller, from the verified token's claims."""
    email = claims.extra.get("email")
    verified = isinstance(email, str) and claims.extra.get("email_verified") is True
    groups: set[str] = set()
    for name in settings.tool_policy_claims:
        value = claims.upstream_claims.get(name)
        if isinstance(value, str):
            groups.update(value.split())
        elif isinstance(value, list):
            groups.update(v for v in value if isinstance(v, str))
    return Caller(
        sub=claims.sub,
        email=t.cast(str, email) if verified else None,
        groups=frozenset(groups),
        client_id=claims.client_id,
        client_name=catalog.name_of(claims.client_id) if catalog else None,
    )
