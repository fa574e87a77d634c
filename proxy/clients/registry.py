"""Client lookup: operator-registered (static) clients first, then DCR ones."""

from __future__ import annotations

import typing as t

from proxy.config.settings import Settings
from proxy.store.records import ClientRecord

if t.TYPE_CHECKING:
    from proxy.store import Store


def static_records(settings: Settings) -> dict[str, ClientRecord]:
    """Operator-registered clients, as records, built once at start-up."""
    records = {}
    for client in settings.static_clients:
        metadata: dict[str, t.Any] = {"client_name": client.client_name}
        if client.scope:
            metadata["scope"] = client.scope
        method = "client_secret_basic" if client.client_secret_hash else "none"
        if client.jwks is not None:
            metadata["jwks"] = client.jwks
            method = "private_key_jwt"
        elif client.jwks_uri is not None:
            metadata["jwks_uri"] = client.jwks_uri
            method = "private_key_jwt"
        records[client.client_id] = ClientRecord(
            client_id=client.client_id,
            redirect_uris=client.redirect_uris,
            token_endpoint_auth_method=method,
            grant_types=("authorization_code", "refresh_token"),
            client_id_issued_at=0,
            client_secret_hash=client.client_secret_hash,
            metadata=metadata,
        )
    return records


class ClientRegistry:
    """Finds clients: static ones from settings first, then the store."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self._static = static_records(settings)

    def find(self, client_id: str) -> ClientRecord | None:
        if client_id in self._static:
            return self._static[client_id]
        if not self._settings.dynamic_registration:
            return None
        return self._store.load_client(client_id)

    def static(self, client_id: str) -> ClientRecord | None:
        return self._static.get(client_id)

    def identity_verified(self, client: ClientRecord) -> bool:
        """Is this client who its record says, or only who it claims to be?

        A static client was named by the operator. (A CIMD client, whose id is
        the URL its document came from, is verified too once CIMD is wired.) A
        DCR registration is a claim anyone can make.
        """
        return client.client_id in self._static
