"""`Mcp-Session-Id` bound to the one who opened it (MCP 2025-11-25; RS-5).

The backend makes the session ids; the gateway learns each from the response
that created it and records its owner, the (client id, subject) pair of the
token that opened it (docs/decisions.md J45). A session id is never a
credential: every request still needs its token, and a token of anyone else
presenting the id is answered 404, as for an unknown session (MCP security
best practices, "Session Hijacking": bind session ids to user-specific
information). The check rides in the pipeline that already checks the grant
(``Limiter.charge_grant``), so it costs no round trip more.
"""

from __future__ import annotations

import hashlib
import logging
import typing as t

from proxy.oauth.errors import BadGatewayError
from proxy.resource_server.jsonrpc_errors import SessionNotFoundError

if t.TYPE_CHECKING:
    from proxy.oauth.access_tokens import AccessClaims
    from proxy.store.sessions import SessionOwners

log = logging.getLogger(__name__)

SESSION_HEADER = "Mcp-Session-Id"


def owner_of(claims: AccessClaims) -> str:
    """Who a session belongs to: the client and the user it acts for, hashed."""
    pair = f"{claims.client_id}\0{claims.sub}".encode()
    return hashlib.sha256(pair).hexdigest()[:32]


class SessionLookup:
    """The owner of a presented session id, read in the grant check's pipeline."""

    scripts: tuple[str, ...] = ()

    def __init__(self, owners: SessionOwners, session_id: str, ttl_seconds: int):
        self._owners = owners
        self.session_id = session_id
        self._ttl = ttl_seconds
        self.owner: str | None = None

    def queue(self, pipe: t.Any, grant_id: str) -> bool:
        self._owners.queue_owner(pipe, self.session_id, ttl_seconds=self._ttl)
        return True

    def receive(self, reply: t.Any) -> None:
        self.owner = reply.decode() if isinstance(reply, bytes) else reply

    def check(self, owner: str) -> None:
        """Raise SessionNotFoundError unless ``owner`` opened this session.

        An id the gateway never saw open (or whose binding ran out) is as
        unknown as another's: the client opens a new session either way.
        """
        if self.owner == owner:
            return
        reason = "unknown_session" if self.owner is None else "foreign_session"
        log.warning("session refused: %s", reason)
        raise SessionNotFoundError(reason=reason)


def after_response(
    owners: SessionOwners,
    *,
    method: str,
    presented: str | None,
    answered: str | None,
    status: int,
    owner: str,
    ttl_seconds: int,
) -> None:
    """Bind a session the backend just opened; forget one it ended.

    Raises BadGatewayError if the backend hands out an id that is already
    someone else's (never relayed: it would give that session away).
    """
    if presented is None:
        # Only a session the backend accepted: an error may name one too.
        opened = answered is not None and 200 <= status < 300
        if opened and not owners.bind(
            t.cast(str, answered), owner, ttl_seconds=ttl_seconds
        ):
            log.error("MCP backend reused a session id bound to another owner")
            raise BadGatewayError("The MCP server answered with a session in use.")
        return
    # The owner's DELETE was accepted, or the backend no longer knows the id.
    ended = method == "DELETE" and 200 <= status < 300
    if ended or status == 404:
        owners.unbind(presented, owner)
