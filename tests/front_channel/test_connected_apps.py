"""The rows of /account: how each kind of client is named, and who may revoke."""

from __future__ import annotations

import time
import typing as t

import pytest

from proxy import create_app
from proxy.clients.document_source import DocumentError
from proxy.config.env import StaticClient
from proxy.config.settings import Settings
from proxy.front_channel.connected_apps import RevokeOutcome
from proxy.front_channel.connected_apps import connected_apps
from proxy.front_channel.connected_apps import revoke_for_user
from proxy.keys.keyring import random_token
from proxy.store.records import Grant

URL_CLIENT = "https://notes.example/oauth/client.json"
BROKEN_URL_CLIENT = "https://broken.example/client.json"
STATIC_CLIENT = "ops-dashboard"


class Documents:
    """A DocumentSource with one good CIMD document; every other URL fails."""

    def fetch_json(
        self, url: str, *, kind: str, force: bool = False
    ) -> dict[str, t.Any]:
        if url != URL_CLIENT:
            raise DocumentError(f"{url} answered 404")
        return {
            "client_id": URL_CLIENT,
            "client_name": "Notes <b>App</b>",
            "redirect_uris": ["https://notes.example/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
        }


@pytest.fixture
def proxy_app(settings: Settings, fake_redis: t.Any) -> t.Any:
    static = StaticClient(
        client_id=STATIC_CLIENT,
        redirect_uris=("https://ops.example/cb",),
        client_name="Ops Dashboard",
    )
    app = create_app(
        settings.replace(static_clients=(static,)),
        redis_client=fake_redis,
        documents=Documents(),
    )
    with app.app_context():
        yield app


def _grant(app: t.Any, client_id: str, sub: str = "alice", scope: str = "mcp") -> str:
    now = int(time.time())
    grant_id = random_token(16)
    app.extensions["proxy"].store.create_grant(
        Grant(
            grant_id=grant_id,
            client_id=client_id,
            sub=sub,
            claims={"email": f"{sub}@example.com"},
            scope=scope,
            resource="http://127.0.0.1:9999/mcp",
            redirect_uri="https://x.example/cb",
            code_challenge="c" * 43,
            code_hash="h" * 64,
            code_exp=now + 60,
            created_at=now,
            expires_at=now + 3600,
            upstream="",
        ),
        3600,
    )
    return grant_id


def test_each_kind_of_client_is_named_as_the_consent_page_named_it(
    proxy_app: t.Any,
) -> None:
    state = proxy_app.extensions["proxy"]
    _grant(proxy_app, URL_CLIENT, scope="mcp mcp:write")
    _grant(proxy_app, STATIC_CLIENT)
    _grant(proxy_app, BROKEN_URL_CLIENT)
    _grant(proxy_app, "expired-dcr-client")
    rows = {row.client_id: row for row in connected_apps(state, "alice")}
    assert set(rows) == {
        URL_CLIENT,
        STATIC_CLIENT,
        BROKEN_URL_CLIENT,
        "expired-dcr-client",
    }

    url = rows[URL_CLIENT]
    assert url.name == "Notes <b>App</b>"  # raw text: the template escapes it
    assert url.verified_host == "notes.example"
    assert url.scopes == ("mcp", "mcp:write")
    assert url.registered

    static = rows[STATIC_CLIENT]
    assert (static.name, static.name_from_operator, static.verified_host) == (
        "Ops Dashboard",
        True,
        None,
    )

    # A document that cannot be fetched now still names the host that vouches.
    broken = rows[BROKEN_URL_CLIENT]
    assert broken.verified_host == "broken.example"
    assert not broken.registered

    gone = rows["expired-dcr-client"]
    assert (gone.name, gone.registered, gone.verified_host) == (
        "expired-dcr-client",
        False,
        None,
    )


def test_rows_are_only_the_users_own(proxy_app: t.Any) -> None:
    state = proxy_app.extensions["proxy"]
    mine = _grant(proxy_app, STATIC_CLIENT, sub="alice")
    _grant(proxy_app, STATIC_CLIENT, sub="bob")
    assert [row.grant_id for row in connected_apps(state, "alice")] == [mine]


def test_only_the_owner_can_revoke(proxy_app: t.Any) -> None:
    state = proxy_app.extensions["proxy"]
    grant_id = _grant(proxy_app, STATIC_CLIENT, sub="alice")
    assert revoke_for_user(state, "bob", grant_id) == (RevokeOutcome.NOT_YOURS, None)
    # A sub that merely starts like the owner's is someone else.
    assert revoke_for_user(state, "alic", grant_id)[0] is RevokeOutcome.NOT_YOURS
    assert state.store.grant_exists(grant_id)
    assert revoke_for_user(state, "alice", grant_id) == (
        RevokeOutcome.REVOKED,
        STATIC_CLIENT,
    )
    assert not state.store.grant_exists(grant_id)
    assert revoke_for_user(state, "alice", grant_id)[0] is RevokeOutcome.NOT_YOURS
