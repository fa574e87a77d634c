"""A changed PROXY_SECRET_KEY with the old one in PROXY_SECRET_KEY_PREVIOUS.

Grants, signing keys and tokens made under the old secret keep working, and
what is sealed is resealed under the new one on use; a value that no key opens
is gone: invalid_grant at the token endpoint, 503 with the cause at /readyz,
never a 500 (decisions J31, J32).
"""

from __future__ import annotations

import json
import typing as t

import pytest

from proxy import create_app
from proxy.keys.key_document import SEAL_CONTEXT
from proxy.keys.key_document import parse_document
from proxy.keys.keyring import Keyring
from proxy.keys.keyring import SealError
from tests.conftest import SECRET_KEY
from tests.oauth_client import OAuthTestClient

from ._helpers import assert_json_error
from ._helpers import resource_status

NEW_KEY = bytes(range(100, 132))
STRANGER_KEY = bytes(range(200, 232))


def _moved(settings: t.Any, fake_redis: t.Any, key: bytes, *previous: bytes) -> t.Any:
    """The same store, served by an app whose secret changed (a restart)."""
    changed = settings.replace(secret_key=key, previous_secret_keys=previous)
    return create_app(changed, redis_client=fake_redis)


def _grant_key(app: t.Any, refresh_token: str) -> str:
    return str(app.extensions["proxy"].store.keys.grant(refresh_token.split(".")[0]))


def _upstream_of(fake_redis: t.Any, grant_key: str) -> str:
    return str(json.loads(fake_redis.get(grant_key))["upstream"])


def test_everything_made_under_the_old_secret_keeps_working(
    oauth: OAuthTestClient, app: t.Any, settings: t.Any, fake_redis: t.Any
) -> None:
    client_id, first = oauth.tokens()
    grant_key = _grant_key(app, first["refresh_token"])
    moved = OAuthTestClient(
        _moved(settings, fake_redis, NEW_KEY, SECRET_KEY).test_client()
    )
    # The access token signed before the change still verifies.
    assert resource_status(moved.client, first["access_token"]) == 200
    response = moved.refresh(client_id, first["refresh_token"])
    assert response.status_code == 200, response.get_data(as_text=True)
    second = response.get_json()
    assert resource_status(moved.client, second["access_token"]) == 200
    # The grant's upstream tokens are now sealed under the new secret alone.
    sealed = _upstream_of(fake_redis, grant_key)
    assert Keyring(NEW_KEY).open(sealed, context=grant_key)
    with pytest.raises(SealError):
        Keyring(SECRET_KEY).open(sealed, context=grant_key)
    # So are the signing keys, in Redis (the same keys: no new kid).
    keys_key = app.extensions["proxy"].store.keys.signing_keys()
    for entry in parse_document(fake_redis.get(keys_key)):
        assert Keyring(NEW_KEY).open(entry.sealed, context=SEAL_CONTEXT)


def test_upstream_tokens_without_a_refresh_token_are_resealed_on_refresh(
    oauth: OAuthTestClient, app: t.Any, settings: t.Any, fake_redis: t.Any
) -> None:
    """Nothing to refresh upstream: the rotation still stores them resealed."""
    client_id, first = oauth.tokens()
    grant_key = _grant_key(app, first["refresh_token"])
    record = json.loads(fake_redis.get(grant_key))
    record["upstream"] = Keyring(SECRET_KEY).seal(
        json.dumps({"access_token": "", "refresh_token": None}).encode(),
        context=grant_key,
    )
    fake_redis.set(grant_key, json.dumps(record), keepttl=True)
    moved = OAuthTestClient(
        _moved(settings, fake_redis, NEW_KEY, SECRET_KEY).test_client()
    )
    assert moved.refresh(client_id, first["refresh_token"]).status_code == 200
    sealed = _upstream_of(fake_redis, grant_key)
    # The same tokens, byte for byte, under the new secret.
    assert json.loads(Keyring(NEW_KEY).open(sealed, context=grant_key)) == {
        "access_token": "",
        "refresh_token": None,
    }


def test_upstream_tokens_no_key_opens_are_invalid_grant_and_kept(
    oauth: OAuthTestClient, app: t.Any, settings: t.Any, fake_redis: t.Any
) -> None:
    """J31: the old secret was not listed: 400 invalid_grant, never a 500; the
    grant stays, so listing the key in PROXY_SECRET_KEY_PREVIOUS revives it."""
    client_id, first = oauth.tokens()
    grant_key = _grant_key(app, first["refresh_token"])
    record = json.loads(fake_redis.get(grant_key))
    record["upstream"] = Keyring(STRANGER_KEY).seal(b"{}", context=grant_key)
    fake_redis.set(grant_key, json.dumps(record), keepttl=True)
    response = oauth.refresh(client_id, first["refresh_token"])
    assert_json_error(response, 400, "invalid_grant")
    assert fake_redis.exists(grant_key)
    # The refresh lease was given back: the grant is exactly as it was.
    assert json.loads(fake_redis.get(grant_key)) == record


def test_a_grant_sealed_under_an_unlisted_secret_is_invalid_grant(
    oauth: OAuthTestClient, settings: t.Any, fake_redis: t.Any
) -> None:
    client_id, first = oauth.tokens()
    stranger = OAuthTestClient(_moved(settings, fake_redis, STRANGER_KEY).test_client())
    response = stranger.refresh(client_id, first["refresh_token"])
    assert_json_error(response, 400, "invalid_grant")


def test_signing_keys_no_key_opens_fail_readiness_naming_the_cause(
    oauth: OAuthTestClient, settings: t.Any, fake_redis: t.Any
) -> None:
    """J32: never regenerated (other instances may still hold the right
    secret); /readyz says why, and the JWKS and verification answer 503."""
    _, first = oauth.tokens()
    stranger = _moved(settings, fake_redis, STRANGER_KEY).test_client()
    ready = stranger.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["signing_keys"] == "unsealable"
    assert_json_error(
        stranger.get("/.well-known/jwks.json"), 503, "temporarily_unavailable"
    )
    assert resource_status(stranger, first["access_token"]) == 503
    # The app that holds the right secret is unaffected: nothing was replaced.
    assert oauth.client.get("/readyz").status_code == 200


def test_a_consent_form_shown_before_the_change_is_accepted_after_it(
    oauth: OAuthTestClient, settings: t.Any, fake_redis: t.Any
) -> None:
    """J33: the signed form, its CSRF token and the browser cookie outlive a
    restart with a new secret (the old one listed as previous)."""
    client_id = oauth.register()["client_id"]
    flow, page = oauth.authorize(client_id)
    assert page.status_code == 200
    # The same browser (cookie jar) now reaches the restarted proxy.
    oauth.client.application = _moved(settings, fake_redis, NEW_KEY, SECRET_KEY)
    assert oauth.consent(flow).status_code == 303
    oauth.upstream_login(flow)
    assert oauth.callback(flow).status_code == 302
    assert oauth.token(flow).status_code == 200


def test_a_consent_form_under_an_unlisted_secret_is_refused(
    oauth: OAuthTestClient, settings: t.Any, fake_redis: t.Any
) -> None:
    client_id = oauth.register()["client_id"]
    flow, _ = oauth.authorize(client_id)
    oauth.client.application = _moved(settings, fake_redis, NEW_KEY)
    assert oauth.consent(flow).status_code == 400
