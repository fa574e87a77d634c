"""The apps that hold a grant for one user, and revoking one of them for that user.

A row names the app as the consent page did: a URL client (CIMD) by the host
that vouches for it, beside the name its document gives itself; a static
client by its configured name; a DCR client only by the name it registered,
which anyone can choose. Every name is text for the template to escape.
"""

from __future__ import annotations

import enum
import logging
import re
import typing as t
from dataclasses import dataclass
from urllib.parse import urlsplit

from proxy.keys.keyring import equal
from proxy.oauth import scopes
from proxy.oauth.client_id_metadata import is_metadata_document_url
from proxy.oauth.errors import OAuthError

if t.TYPE_CHECKING:
    from proxy.app_state import AppState
    from proxy.store.records import ClientRecord
    from proxy.store.records import GrantSummary

log = logging.getLogger(__name__)

#: The shape of a grant id (``opaque_tokens.new_grant_id()``); anything else
#: is refused before it reaches a Redis key.
_GRANT_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")


@dataclass(frozen=True, slots=True)
class ConnectedApp:
    """One row of the page: one grant, described for the user who gave it."""

    grant_id: str
    client_id: str
    #: What the client calls itself (DCR, CIMD) or the operator named it.
    name: str
    #: CIMD-11: the host of a URL client id, which vouches for the document.
    verified_host: str | None
    #: The name was chosen by the operator (static client), not the client.
    name_from_operator: bool
    #: False when the client's registration is gone (expired DCR client).
    registered: bool
    scopes: tuple[str, ...]
    created_at: int
    #: The last code redeemed or refresh rotated, not the last MCP call (J43).
    last_used_at: int | None


class RevokeOutcome(enum.Enum):
    REVOKED = "revoked"
    #: No such grant, or it belongs to someone else: one answer for both, so
    #: nobody learns whether another user's grant id exists (decision J42).
    NOT_YOURS = "not_yours"


def connected_apps(app: AppState, sub: str) -> list[ConnectedApp]:
    """The user's grants as rows, in the store's order (newest first)."""
    rows = []
    clients: dict[str, ClientRecord | None] = {}
    for summary in app.store.grants_of_user(sub):
        # A user's grants seldom span more than a few clients: look each up once.
        if summary.client_id not in clients:
            clients[summary.client_id] = _client(app, summary.client_id)
        rows.append(_row(app, summary, clients[summary.client_id]))
    return rows


def _client(app: AppState, client_id: str) -> ClientRecord | None:
    """The client's registration, or None when it is gone or cannot be read.

    A URL client's document may fail to fetch now; the page still lists the
    grant (by its verified host) so the user can revoke it.
    """
    try:
        return app.clients.find(client_id)
    except OAuthError as exc:
        log.info("connected apps: client unreadable (%s)", exc.reason)
        return None


def _row(
    app: AppState, summary: GrantSummary, client: ClientRecord | None
) -> ConnectedApp:
    return ConnectedApp(
        grant_id=summary.grant_id,
        client_id=summary.client_id,
        name=client.client_name if client is not None else summary.client_id,
        verified_host=_host_of_url_client(summary.client_id),
        name_from_operator=app.clients.static(summary.client_id) is not None,
        registered=client is not None,
        scopes=tuple(scopes.parse(summary.scope)),
        created_at=summary.created_at,
        last_used_at=summary.last_used_at,
    )


def _host_of_url_client(client_id: str) -> str | None:
    """CIMD-11: the host that vouches for a URL client, even when its document
    cannot be read right now (``registry.verified_host()`` needs the record)."""
    if not is_metadata_document_url(client_id):
        return None
    return urlsplit(client_id).hostname


def is_grant_id(value: str) -> bool:
    return _GRANT_ID.fullmatch(value) is not None


def revoke_for_user(
    app: AppState, sub: str, grant_id: str
) -> tuple[RevokeOutcome, str | None]:
    """End `grant_id` if it is `sub`'s: (outcome, the grant's client id).

    The grant is loaded and its owner compared before anything is deleted;
    deleting the record ends every token it issued at their next use (the
    gateway and forward-auth ask the store on every request).
    """
    if not is_grant_id(grant_id):
        return RevokeOutcome.NOT_YOURS, None
    grant = app.store.load_grant(grant_id)
    if grant is None:
        return RevokeOutcome.NOT_YOURS, None
    if not equal(grant.sub, sub):
        log.warning("account: revoke refused for a grant of another user")
        return RevokeOutcome.NOT_YOURS, None
    app.store.revoke_grant(grant_id)
    return RevokeOutcome.REVOKED, grant.client_id
