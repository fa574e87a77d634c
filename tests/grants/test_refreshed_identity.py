"""proxy/grants/refreshed_identity.py: what a refresh does with the identity (J66).

End to end through /oauth2/token against the local OIDC stand-in, which can
put a new ID token in its refresh answers and change a user's claims between
login and refresh: the new claims reach the grant and the new access token,
and a changed subject, a refused user or a bad ID token end the grant.
"""

from __future__ import annotations

import typing as t

import pytest

from proxy import create_app
from proxy.config.settings import Settings
from proxy.grants.refreshed_identity import changed_names
from proxy.keys import signing_keys
from proxy.observability.events import Event
from tests.conftest import PUBLIC_URL
from tests.conftest import RESOURCE
from tests.conftest import SECRET_KEY
from tests.endpoints._helpers import assert_json_error
from tests.oauth_client import OAuthTestClient
from tests.redis_round_trips import RoundTrips
from tests.upstream.standins import OIDCStandIn
from tests.upstream.standins import access_claims
from tests.upstream.standins import come_back
from tests.upstream.standins import start_login

USER = {
    "sub": "u1",
    "email": "ann@example.com",
    "email_verified": True,
    "groups": ["admins"],
}


@pytest.fixture
def idp(httpserver: t.Any) -> OIDCStandIn:
    return OIDCStandIn(httpserver, id_token_on_refresh=True)


@pytest.fixture
def base_settings(idp: OIDCStandIn) -> Settings:
    return Settings(
        public_url=PUBLIC_URL,
        upstream_issuer=idp.issuer,
        upstream_client_id=idp.client_id,
        upstream_client_secret=idp.client_secret,
        resource=RESOURCE,
        secret_key=SECRET_KEY,
        key_prefix="rid:",
        token_extra_claims=("groups",),
    )


class Run:
    """One app over the shared fake Redis, with the events it emitted."""

    def __init__(self, settings: Settings, redis_client: t.Any) -> None:
        self.app = create_app(settings, redis_client=redis_client)
        self.oauth = OAuthTestClient(self.app.test_client())
        self.state = self.app.extensions["proxy"]
        self.events: list[Event] = []
        self.state.events.subscribe(self.events.append)

    def login(self, idp: OIDCStandIn, claims: dict[str, t.Any]) -> tuple[str, t.Any]:
        flow = start_login(self.oauth)
        code, _ = idp.login(flow.upstream_url, claims)
        assert "code" in come_back(self.oauth, flow, code=code)
        response = self.oauth.token(flow)
        assert response.status_code == 200, response.get_data(as_text=True)
        return flow.client_id, response.get_json()

    def grant_of(self, body: dict[str, t.Any]) -> t.Any:
        return self.state.store.load_grant(body["refresh_token"].split(".")[0])

    def revoked(self) -> list[str]:
        return [e.fields["reason"] for e in self.events if e.name == "grant.revoked"]


@pytest.fixture
def run(base_settings: Settings, fake_redis: t.Any) -> Run:
    return Run(base_settings, fake_redis)


def test_groups_removed_upstream_leave_the_grant_and_the_next_token(
    run: Run, idp: OIDCStandIn
) -> None:
    client_id, body = run.login(idp, USER)
    assert access_claims(body["access_token"])["groups"] == ["admins"]
    idp.users["u1"] = {**USER, "groups": []}
    refreshed = run.oauth.refresh(client_id, body["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_data(as_text=True)
    assert access_claims(refreshed.get_json()["access_token"])["groups"] == []
    assert run.grant_of(body).claims["groups"] == []
    changed = [e for e in run.events if e.name == "refresh.claims_changed"]
    assert [e.fields["claims"] for e in changed] == ["groups"]


def test_the_grace_answer_carries_the_refreshed_claims(
    run: Run, idp: OIDCStandIn
) -> None:
    """J6's second answer for the same token is minted from the stored claims."""
    client_id, body = run.login(idp, USER)
    idp.users["u1"] = {**USER, "groups": ["staff"]}
    first = run.oauth.refresh(client_id, body["refresh_token"])
    again = run.oauth.refresh(client_id, body["refresh_token"])
    assert again.status_code == 200
    assert again.get_json()["refresh_token"] == first.get_json()["refresh_token"]
    assert access_claims(again.get_json()["access_token"])["groups"] == ["staff"]


def test_unchanged_claims_emit_no_change(run: Run, idp: OIDCStandIn) -> None:
    client_id, body = run.login(idp, USER)
    assert run.oauth.refresh(client_id, body["refresh_token"]).status_code == 200
    assert not [e for e in run.events if e.name == "refresh.claims_changed"]


def _refresh_ends_the_grant(
    run: Run, idp: OIDCStandIn, refreshed_user: dict[str, t.Any], reason: str
) -> None:
    """Log in, let the IdP answer the refresh as `refreshed_user`: invalid_grant,
    the grant deleted, one grant.revoked event with `reason`."""
    client_id, body = run.login(idp, USER)
    idp.users["u1"] = refreshed_user
    response = run.oauth.refresh(client_id, body["refresh_token"])
    assert_json_error(response, 400, "invalid_grant")
    assert run.grant_of(body) is None
    assert run.revoked() == [reason]


def test_another_subject_in_the_refresh_answer_ends_the_grant(
    run: Run, idp: OIDCStandIn
) -> None:
    _refresh_ends_the_grant(run, idp, {**USER, "sub": "u2"}, "upstream_subject_changed")


def test_a_user_the_allow_lists_now_refuse_loses_the_grant(
    base_settings: Settings, fake_redis: t.Any, idp: OIDCStandIn
) -> None:
    run = Run(
        base_settings.replace(allowed_email_domains=frozenset({"example.com"})),
        fake_redis,
    )
    refused = {**USER, "email": "ann@elsewhere.example"}
    _refresh_ends_the_grant(run, idp, refused, "upstream_identity_refused")


def test_an_id_token_that_does_not_verify_ends_the_grant(
    run: Run, idp: OIDCStandIn
) -> None:
    """J66: never the old claims with a new token; the user logs in again."""
    foreign = {**USER, "aud": "another-client"}
    _refresh_ends_the_grant(run, idp, foreign, "upstream_identity_invalid")


def test_an_unreachable_jwks_is_a_503_that_keeps_the_grant(
    run: Run, idp: OIDCStandIn, httpserver: t.Any
) -> None:
    client_id, body = run.login(idp, USER)
    httpserver.expect_request("/jwks-down").respond_with_json({}, status=503)
    idp.discovery["jwks_uri"] = httpserver.url_for("/jwks-down")
    run.state.upstream._discovery = None  # re-read discovery
    run.state.upstream._jwks = None
    response = run.oauth.refresh(client_id, body["refresh_token"])
    assert_json_error(response, 503, "temporarily_unavailable")
    grant = run.grant_of(body)
    assert grant is not None
    assert grant.claims["groups"] == ["admins"]
    assert run.revoked() == []


def test_without_an_upstream_refresh_token_the_login_claims_stand(
    run: Run, idp: OIDCStandIn
) -> None:
    """Groups are as fresh as the IdP lets us be: no upstream refresh, no re-read."""
    flow = start_login(run.oauth)
    code, _ = idp.login(flow.upstream_url, USER, refresh=False)
    assert "code" in come_back(run.oauth, flow, code=code)
    body = run.oauth.token(flow).get_json()
    idp.users["u1"] = {**USER, "groups": []}
    refreshed = run.oauth.refresh(flow.client_id, body["refresh_token"])
    assert refreshed.status_code == 200
    assert access_claims(refreshed.get_json()["access_token"])["groups"] == ["admins"]


def test_a_tightened_allow_list_ends_a_grant_the_idp_says_nothing_new_about(
    base_settings: Settings, fake_redis: t.Any, idp: OIDCStandIn
) -> None:
    """The email lists are asked of the stored claims too (as /account does, J44)."""
    idp.id_token_on_refresh = False
    open_run = Run(base_settings.replace(token_extra_claims=()), fake_redis)
    client_id, body = open_run.login(idp, USER)
    strict = Run(
        base_settings.replace(
            token_extra_claims=(), allowed_emails=frozenset({"bob@example.com"})
        ),
        fake_redis,
    )
    response = strict.oauth.refresh(client_id, body["refresh_token"])
    assert_json_error(response, 400, "invalid_grant")
    assert strict.grant_of(body) is None
    assert strict.revoked() == ["identity_refused"]
    assert idp.userinfo_requests == []


def test_new_claims_cost_no_extra_round_trip_on_real_redis(
    base_settings: Settings,
    real_redis: t.Any,
    idp: OIDCStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The claims ride in ROTATE_REFRESH: a refresh that changes them makes
    as many round trips to a real redis-server as one that does not."""
    # Out of the count: the trace flusher's thread and the signing keys' timed
    # re-reads (once a second at most), which land in whichever refresh runs.
    monkeypatch.setattr(signing_keys, "JWKS_REREAD_SECONDS", 3600.0)
    monkeypatch.setattr(signing_keys, "RECHECK_SECONDS", 3600.0)
    run = Run(base_settings.replace(trace_ttl_seconds=0), real_redis)
    counter = RoundTrips(monkeypatch)
    client_id, body = run.login(idp, USER)
    warm = run.oauth.refresh(client_id, body["refresh_token"]).get_json()
    same, kept = counter.of(lambda: run.oauth.refresh(client_id, warm["refresh_token"]))
    idp.users["u1"] = {**USER, "groups": []}
    changed, new = counter.of(
        lambda: run.oauth.refresh(client_id, kept.get_json()["refresh_token"])
    )
    assert new.status_code == 200
    assert access_claims(new.get_json()["access_token"])["groups"] == []
    assert run.grant_of(body).claims["groups"] == []
    assert changed == same


def test_changed_names_lists_names_never_values() -> None:
    old = {"email": "a@x", "groups": ["admins"], "roles": ["r"]}
    new = {"email": "a@x", "groups": [], "team": "t"}
    assert changed_names(old, new) == ["groups", "roles", "team"]
    assert changed_names(old, dict(old)) == []
