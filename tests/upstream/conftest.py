"""Fixtures for the provider tests: settings and an app over any upstream."""

from __future__ import annotations

import typing as t

import pytest

from proxy import create_app
from proxy.config.settings import Settings
from tests.conftest import PUBLIC_URL
from tests.conftest import RESOURCE
from tests.conftest import SECRET_KEY
from tests.oauth_client import OAuthTestClient


@pytest.fixture
def provider_settings() -> Settings:
    """Settings with no upstream yet: each test names its provider and issuer."""
    return Settings(
        public_url=PUBLIC_URL,
        upstream_issuer="http://localhost:1",
        upstream_client_id="proxy-client",
        upstream_client_secret="proxy-secret",
        resource=RESOURCE,
        secret_key=SECRET_KEY,
        key_prefix="prov:",
        code_replay_tolerance_seconds=0,
    )


@pytest.fixture
def make_oauth(fake_redis: t.Any) -> t.Callable[[Settings], OAuthTestClient]:
    """An OAuthTestClient driving an app built from `settings` (the factory)."""

    def make(settings: Settings) -> OAuthTestClient:
        app = create_app(settings, redis_client=fake_redis)
        oauth = OAuthTestClient(app.test_client())
        oauth.app = app  # type: ignore[attr-defined]
        return oauth

    return make
