"""The whole front and back channel once, on the test app and a real IdP."""

from __future__ import annotations

from tests.oauth_client import OAuthTestClient
from tests.oauth_client import query_of


def test_full_flow_issues_tokens_and_refreshes(oauth: OAuthTestClient) -> None:
    client_id = oauth.register()["client_id"]
    flow = oauth.login(client_id)
    query = query_of(flow.location)
    assert query["state"] == ["client-state"]
    assert query["iss"] == ["http://127.0.0.1:9999"]
    response = oauth.token(flow)
    assert response.status_code == 200
    body = response.get_json()
    assert body["token_type"] == "Bearer"
    refreshed = oauth.refresh(client_id, body["refresh_token"])
    assert refreshed.status_code == 200
    assert refreshed.get_json()["refresh_token"] != body["refresh_token"]
