"""Things that happened, said once: ``events.emit("code.redeemed", client_id=...)``.

Code that does something an operator may need to see (a grant created, a code
replayed, a document refused) emits one :class:`Event` here and knows nothing
about where it goes. Sinks subscribe at start-up: the audit log
(`observability/audit.py`), the Prometheus counters (`observability/metrics.py`)
and the flow trace (`observability/trace.py`). A sink that fails is logged and
skipped; it never fails the request that emitted.

Names are stable (dashboards and alerts key on them): add new ones, never
rename. Field values must never be secrets: no codes, tokens, assertions,
`state`, cookies or client secrets; ids and hashes only.
"""

from __future__ import annotations

import logging
import time
import typing as t
from contextvars import ContextVar
from dataclasses import dataclass
from dataclasses import field

log = logging.getLogger(__name__)

#: Every event name, with what it means. Outcome "ok" unless noted.
NAMES: dict[str, str] = {
    # Registration and client documents.
    "client.registered": "a DCR registration was stored",
    "client.refused": "a DCR registration was refused (reason)",
    "document.fetched": "a client's document (CIMD or JWKS) was fetched and valid",
    "document.refused": "a client's document could not be used (reason)",
    # The front channel.
    "authorize.received": "a valid authorization request (client, redirect_uri)",
    "authorize.refused": "an authorization request shown an error page (reason)",
    "consent.shown": "the consent page was shown",
    "consent.approved": "the user approved",
    "consent.denied": "the user denied",
    "consent.skipped": "consent was remembered or the client is trusted (reason)",
    "consent.refused": "a consent answer was refused (reason: csrf, expired form)",
    "upstream.redirected": "the browser was sent to the upstream IdP",
    "callback.received": "the IdP answered the callback (upstream error if any)",
    "login.succeeded": "the upstream login passed every check",
    "login.refused": "the upstream login was refused (reason: allow-list, ...)",
    # The token endpoint.
    "grant.created": "a code was minted for a new grant",
    "code.redeemed": "a code was exchanged for tokens",
    "code.replayed": "a spent code was presented again (the grant is revoked)",
    "token.refused": "a token request failed (reason: pkce, redirect_uri, ...)",
    "client_auth.failed": "client authentication failed (reason)",
    "refresh.rotated": "a refresh token was rotated",
    "refresh.reuse_detected": "a rotated-out refresh token came back",
    "refresh.claims_changed": "a refresh re-read the user upstream and the "
    "token claims changed (claims: their names only, J66)",
    "grant.revoked": "a grant ended (reason: reuse, revocation, admin, account, "
    "an identity a refresh re-read and the login rules refuse, J67)",
    "token.revoked": "a token was revoked at /oauth2/revoke",
    "upstream.refresh_failed": "refreshing the upstream token failed (reason)",
    # Limits and the resource server.
    "rate.limited": "a request was refused by a rate limit (limit)",
    "redirect_uri.refused": "a redirect URI was refused (where, reason)",
    "gateway.first_call": "the first MCP call on a grant reached the backend",
    "gateway.refused": "the gateway refused a call (reason)",
    # End users: the connected-apps page (/account).
    "account.signed_in": "a user signed in to /account through the IdP",
    "account.grant_revoked": "a user revoked an app's grant at /account",
    "account.signed_out": "a user signed out of /account",
    "account.refused": "an /account request was refused (reason: csrf, ...)",
    "gateway.tool_denied": "a tool call was refused: the tool policy "
    "(reason denied_by_rule, denied_by_default) or a missing tool scope "
    "(insufficient_scope); tool, rule, client; where=forward_auth when "
    "forward-auth refused it (from Mcp-Name)",
    "gateway.policy_reloaded": "the tool policy file changed and was re-read "
    "(outcome error: it was bad and the last good policy stays)",
    # Operators.
    "admin.action": "an operator acted through the admin CLI (action)",
    # Keys (python -m proxy keys, and workers adopting a changed secret).
    "keys.rotated": "a next signing key was published; it signs from sign_from",
    "keys.retired": "a signing key was retired early by an operator (kid)",
    "keys.resealed": "the signing keys were resealed under a new PROXY_SECRET_KEY",
}


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who is asking, set once per request by the web layer."""

    request_id: str
    ip: str
    user_agent: str


#: The current request's context; None outside a request (CLI, start-up).
current_request: ContextVar[RequestContext | None] = ContextVar(
    "current_request", default=None
)
#: The authorization attempt this request belongs to (its trace id), if known.
current_trace: ContextVar[str | None] = ContextVar("current_trace", default=None)


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    outcome: str
    at: float
    fields: dict[str, t.Any]
    request: RequestContext | None = None
    trace_id: str | None = None


Sink = t.Callable[[Event], None]


@dataclass(slots=True)
class Events:
    """The hub: :meth:`emit` hands each event to every subscribed sink."""

    sinks: list[Sink] = field(default_factory=list)

    def subscribe(self, sink: Sink) -> None:
        self.sinks.append(sink)

    def emit(self, name: str, *, outcome: str = "ok", **fields: t.Any) -> Event:
        """Record that `name` happened; `fields` are ids and reasons, never secrets."""
        if name not in NAMES:
            raise ValueError(f"unknown event name {name!r}: add it to NAMES")
        trace_id = fields.pop("trace_id", None) or current_trace.get()
        event = Event(
            name=name,
            outcome=outcome,
            at=time.time(),
            fields={k: v for k, v in fields.items() if v is not None},
            request=current_request.get(),
            trace_id=trace_id,
        )
        for sink in self.sinks:
            try:
                sink(event)
            except Exception:  # a sink never fails the request
                log.exception("event sink %r failed on %s", sink, name)
        return event
