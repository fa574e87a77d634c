"""POST /oauth2/revoke: RFC 7009 token revocation."""

from __future__ import annotations

import typing as t

import pytest

from tests.oauth_client import OAuthTestClient

from ._helpers import assert_json_error
from ._helpers import assert_no_store
from ._helpers import basic
from ._helpers import resource_status

REVOKE = "/oauth2/revoke"


@pytest.fixture
def issued(oauth: OAuthTestClient) -> tuple[str, dict[str, t.Any]]:
    return oauth.tokens()


def _revoke(client: t.Any, **form: str) -> t.Any:
    return client.post(REVOKE, data=form)


@pytest.mark.parametrize("hint", [None, "refresh_token", "access_token"])
def test_public_client_revokes_its_refresh_token(
    oauth: OAuthTestClient, issued: tuple[str, dict[str, t.Any]], hint: str | None
) -> None:
    """REV-1, REV-5: 200, and the refresh token is dead, whatever the hint says."""
    client_id, body = issued
    form = {"token": body["refresh_token"], "client_id": client_id}
    if hint:
        form["token_type_hint"] = hint
    response = _revoke(oauth.client, **form)
    assert response.status_code == 200
    assert_no_store(response)
    assert_json_error(
        oauth.refresh(client_id, body["refresh_token"]), 400, "invalid_grant"
    )


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token"])
def test_revoking_the_access_token_ends_the_grant(
    oauth: OAuthTestClient, issued: tuple[str, dict[str, t.Any]], hint: str | None
) -> None:
    """REV-4, REV-5, REV-6: the access token stops working at the resource at once,
    and (MAY) the refresh token of the grant with it."""
    client_id, body = issued
    assert resource_status(oauth.client, body["access_token"]) == 200
    form = {"token": body["access_token"], "client_id": client_id}
    if hint:
        form["token_type_hint"] = hint
    assert _revoke(oauth.client, **form).status_code == 200
    assert resource_status(oauth.client, body["access_token"]) == 401
    assert_json_error(
        oauth.refresh(client_id, body["refresh_token"]), 400, "invalid_grant"
    )


def test_revoking_the_refresh_token_kills_its_access_tokens(
    oauth: OAuthTestClient, issued: tuple[str, dict[str, t.Any]]
) -> None:
    """REV-4: revoke the refresh token → its access token at the resource → 401."""
    client_id, body = issued
    _revoke(oauth.client, token=body["refresh_token"], client_id=client_id)
    assert resource_status(oauth.client, body["access_token"]) == 401


def test_revoking_the_previous_refresh_token_in_grace_ends_the_grant(
    oauth: OAuthTestClient, issued: tuple[str, dict[str, t.Any]]
) -> None:
    """REV-1: the just-rotated token is still ours to revoke; it ends the grant."""
    client_id, first = issued
    second = oauth.refresh(client_id, first["refresh_token"]).get_json()
    _revoke(oauth.client, token=first["refresh_token"], client_id=client_id)
    assert_json_error(
        oauth.refresh(client_id, second["refresh_token"]), 400, "invalid_grant"
    )


@pytest.mark.parametrize(
    "token",
    ["garbage", "A" * 22 + "." + "B" * 43, "eyJhbGciOi.bogus.jwt", "x" * 2000],
)
def test_unknown_tokens_get_200(
    oauth: OAuthTestClient, issued: tuple[str, dict[str, t.Any]], token: str
) -> None:
    """REV-2: an invalid or unknown token → 200 all the same."""
    client_id, _ = issued
    response = _revoke(oauth.client, token=token, client_id=client_id)
    assert response.status_code == 200
    assert_no_store(response)


@pytest.mark.parametrize("kind", ["refresh_token", "access_token"])
def test_another_clients_token_is_not_revoked(
    oauth: OAuthTestClient, issued: tuple[str, dict[str, t.Any]], kind: str
) -> None:
    """REV-3: client B revoking A's token is refused; A's tokens still work."""
    client_id, body = issued
    other = oauth.register()["client_id"]
    response = _revoke(oauth.client, token=body[kind], client_id=other)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"
    assert resource_status(oauth.client, body["access_token"]) == 200
    assert oauth.refresh(client_id, body["refresh_token"]).status_code == 200


def test_unsupported_hint_is_unsupported_token_type(
    oauth: OAuthTestClient, issued: tuple[str, dict[str, t.Any]]
) -> None:
    """REV-5: a token type the AS cannot revoke → 400 unsupported_token_type."""
    client_id, body = issued
    response = _revoke(
        oauth.client,
        token=body["refresh_token"],
        client_id=client_id,
        token_type_hint="id_token",
    )
    assert_json_error(response, 400, "unsupported_token_type")
    assert oauth.refresh(client_id, body["refresh_token"]).status_code == 200


def test_token_is_required(
    oauth: OAuthTestClient, issued: tuple[str, dict[str, t.Any]]
) -> None:
    """REV-1: token is REQUIRED → invalid_request."""
    client_id, _ = issued
    assert_json_error(
        _revoke(oauth.client, client_id=client_id), 400, "invalid_request"
    )


def test_client_id_is_required(
    oauth: OAuthTestClient, issued: tuple[str, dict[str, t.Any]]
) -> None:
    """REV-1: a public client identifies itself with client_id."""
    _, body = issued
    response = _revoke(oauth.client, token=body["refresh_token"])
    assert_json_error(response, 400, "invalid_request")


def test_confidential_client_must_authenticate(oauth: OAuthTestClient) -> None:
    """REV-1: a confidential client authenticates; a wrong Basic secret → 401."""
    registered = oauth.register(token_endpoint_auth_method="client_secret_basic")
    client_id, secret = registered["client_id"], registered["client_secret"]
    flow = oauth.login(client_id)
    body = oauth.client.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": flow.code,
            "code_verifier": flow.verifier,
        },
        headers=basic(client_id, secret),
    ).get_json()
    wrong = oauth.client.post(
        REVOKE,
        data={"token": body["refresh_token"]},
        headers=basic(client_id, "wrong"),
    )
    assert_json_error(wrong, 401, "invalid_client")
    assert wrong.headers["WWW-Authenticate"].lower().startswith("basic")
    right = oauth.client.post(
        REVOKE,
        data={"token": body["refresh_token"]},
        headers=basic(client_id, secret),
    )
    assert right.status_code == 200
    assert resource_status(oauth.client, body["access_token"]) == 401


def test_unknown_client_is_401(oauth: OAuthTestClient) -> None:
    """REV-1: an unknown client_id cannot revoke anything → 401 invalid_client."""
    response = _revoke(oauth.client, token="garbage", client_id="mcp_nobody")
    assert_json_error(response, 401, "invalid_client")


def test_get_revoke_is_405_json(client: t.Any) -> None:
    """GEN-8: revoke accepts POST only."""
    response = client.get(REVOKE)
    assert response.status_code == 405
    assert response.mimetype == "application/json"


def test_json_body_is_invalid_request(
    oauth: OAuthTestClient, issued: tuple[str, dict[str, t.Any]]
) -> None:
    """GEN-9: revoke parses form bodies; JSON → 400 invalid_request JSON."""
    client_id, body = issued
    response = oauth.client.post(
        REVOKE, json={"token": body["refresh_token"], "client_id": client_id}
    )
    assert_json_error(response, 400, "invalid_request")
    assert oauth.refresh(client_id, body["refresh_token"]).status_code == 200


def test_credentials_in_the_query_are_refused(
    oauth: OAuthTestClient, issued: tuple[str, dict[str, t.Any]]
) -> None:
    """TOK-8: client credentials in the revoke URI → 400."""
    client_id, body = issued
    response = oauth.client.post(
        REVOKE + "?client_id=" + client_id, data={"token": body["refresh_token"]}
    )
    assert_json_error(response, 400, "invalid_request")
