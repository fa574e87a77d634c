"""What every ``python -m proxy admin`` command works with, and how it answers.

The CLI talks to the shared store directly (no HTTP, no app): one
:class:`Admin` holds the store, the operator views of it, the static clients
from STATIC_CLIENTS_FILE, and an event hub, so every change an operator makes
is an ``admin.action`` audit event exactly as if a request had made it.
"""

from __future__ import annotations

import time
import typing as t
from dataclasses import dataclass

from proxy.cli import tables
from proxy.oauth.client_id_metadata import is_metadata_document_url

if t.TYPE_CHECKING:
    from proxy.config.env import StaticClient
    from proxy.observability.events import Events
    from proxy.store import Store
    from proxy.store.inventory import Inventory
    from proxy.store.records import Grant

#: Exit codes: done; the client or grant named does not exist; bad usage or
#: configuration (including a Redis that cannot be reached).
OK = 0
NOT_FOUND = 1
USAGE = 2


@dataclass
class Admin:
    store: Store
    inventory: Inventory
    static: dict[str, StaticClient]
    events: Events
    out: t.TextIO
    json: bool = False
    #: CLIENT_TTL_SECONDS as the proxy has it (0: registrations never expire).
    client_ttl_seconds: int = 0

    def kind_of(self, client_id: str) -> str:
        """static, cimd (a URL client id) or dcr: which space an id is in."""
        if client_id in self.static:
            return "static"
        if is_metadata_document_url(client_id):
            return "cimd"
        return "dcr"

    def end_grants(self, grants: list[Grant]) -> int:
        """Revoke `grants` (one ``grant.revoked`` event each); how many ended."""
        ended = self.store.revoke_grants(grants)
        for grant in grants:
            self.events.emit(
                "grant.revoked",
                client_id=grant.client_id,
                sub=grant.sub,
                grant=grant.grant_id[:8],
                reason="admin",
            )
        return ended

    def acted(self, action: str, target: str, count: int, **fields: t.Any) -> None:
        """The audit event of a change: which action, on what, how many things."""
        self.events.emit(
            "admin.action", action=action, target=target, count=count, **fields
        )

    def say(self, message: str, **record: t.Any) -> None:
        """A one-line answer, or its JSON object with ``--json``."""
        if self.json:
            self.out.write(tables.as_json({"message": message, **record}))
        else:
            self.out.write(message + "\n")

    def fail(self, code: int, message: str) -> int:
        self.say(message, error=code)
        return code


def now() -> int:
    return int(time.time())
