"""State written straight into Redis, in each server's own record format.

Proxy records go through `proxy.store.Store` (the same methods the endpoints
use), so codes, grants and refresh tokens are exactly what the callback and
token endpoints would have written; only the browser and upstream legs are
skipped. Floor records are the floor app's own JSON.
"""

from __future__ import annotations

import json
import secrets
import time
import typing as t

import redis

from proxy.config.settings import Settings
from proxy.keys.keyring import Keyring
from proxy.keys.keyring import sha256_hex
from proxy.oauth.opaque_tokens import new_grant_id
from proxy.oauth.opaque_tokens import new_opaque
from proxy.store import RedeemResult
from proxy.store import RotateResult
from proxy.store import Store
from proxy.store.records import Grant

from .load import REDIRECT_URI
from .load import pkce_pair

#: Upstream tokens without a refresh token: the proxy then refreshes only its
#: own grant (no upstream call), which is what the per-endpoint loop measures.
PLAIN_UPSTREAM = {
    "access_token": "upstream-" + "a" * 40,
    "refresh_token": None,
    "expires_at": None,
    "scope": "openid email",
}


class ProxyFixtures:
    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.settings = settings
        self.client = redis.Redis.from_url(redis_url, decode_responses=True)
        self.store = Store(self.client, settings.key_prefix)
        self.keyring = Keyring(settings.secret_key)
        self.verifier, self.challenge = pkce_pair()

    def grant(
        self, client_id: str, upstream: dict[str, t.Any] | None = None
    ) -> tuple[str, str]:
        """A grant right after the callback; returns (code, grant_id)."""
        s = self.settings
        grant_id = new_grant_id()
        code, secret = new_opaque(grant_id)
        now = int(time.time())
        key = self.store.keys.grant(grant_id)
        plain = json.dumps(upstream or PLAIN_UPSTREAM).encode()
        grant = Grant(
            grant_id=grant_id,
            client_id=client_id,
            sub="bench-user",
            claims={"email": "bench-user@example.com"},
            scope=" ".join(s.mcp_scopes) or "mcp",
            resource=s.resource,
            redirect_uri=REDIRECT_URI,
            code_challenge=self.challenge,
            code_hash=sha256_hex(secret),
            code_exp=now + s.code_ttl_seconds,
            created_at=now,
            expires_at=now + s.refresh_token_max_lifetime_seconds,
            upstream=self.keyring.seal(plain, context=key),
        )
        self.store.create_grant(grant, ttl=s.code_ttl_seconds)
        return code, grant_id

    def redeemed(
        self, client_id: str, upstream: dict[str, t.Any] | None = None
    ) -> tuple[str, str]:
        """A grant whose code was redeemed; returns (refresh_token, grant_id)."""
        code, grant_id = self.grant(client_id, upstream)
        refresh, refresh_secret = new_opaque(grant_id)
        result = self.store.redeem_code(
            grant_id,
            code_hash=sha256_hex(code.split(".", 1)[1]),
            now=int(time.time()),
            tolerance=self.settings.code_replay_tolerance_seconds,
            refresh_hash=sha256_hex(refresh_secret),
            ttl=self.settings.refresh_token_ttl_seconds,
        )
        if result is not RedeemResult.OK:
            raise RuntimeError(f"redeem_code: {result}")
        return refresh, grant_id

    def refreshed(
        self,
        client_id: str,
        upstream: dict[str, t.Any],
        token_response: bytes,
    ) -> str:
        """A grant after one refresh (its largest steady state); returns its id."""
        refresh, grant_id = self.redeemed(client_id, upstream)
        old_secret = refresh.split(".", 1)[1]
        new, new_secret = new_opaque(grant_id)
        key = self.store.keys.grant(grant_id)
        # As the proxy stores them: no upstream access token unless forwarded,
        # and only the new refresh token kept for the grace window.
        kept_upstream = {**upstream, "access_token": ""}
        upstream_sealed = self.keyring.seal(
            json.dumps(kept_upstream).encode(), context=key
        )
        scope = json.loads(token_response).get("scope", "mcp")
        pending = json.dumps({"refresh_token": new, "scope": scope}).encode()
        result = self.store.rotate_refresh(
            grant_id,
            expected_gen=1,
            new_hash=sha256_hex(new_secret),
            now=int(time.time()),
            pending=self.keyring.seal_with(old_secret, pending, context=key),
            ttl=self.settings.refresh_token_ttl_seconds,
            upstream=upstream_sealed,
        )
        if result is not RotateResult.OK:
            raise RuntimeError(f"rotate_refresh: {result}")
        return grant_id

    def open_upstream(self, grant_id: str) -> dict[str, t.Any]:
        key = self.store.keys.grant(grant_id)
        sealed = json.loads(str(self.client.get(key)))["upstream"]
        return t.cast(
            dict[str, t.Any], json.loads(self.keyring.open(str(sealed), context=key))
        )


class FloorFixtures:
    PREFIX = "floor:"

    def __init__(self, redis_url: str, resource: str) -> None:
        self.client = redis.Redis.from_url(redis_url, decode_responses=True)
        self.resource = resource
        self.verifier, self.challenge = pkce_pair()

    def _record(self, client_id: str, grant: str) -> str:
        return json.dumps(
            {
                "client_id": client_id,
                "sub": "bench-user",
                "scope": "mcp",
                "resource": self.resource,
                "code_challenge": self.challenge,
                "grant": grant,
            }
        )

    def codes(self, client_id: str, count: int) -> list[str]:
        codes = []
        pipe = self.client.pipeline(transaction=False)
        for _ in range(count):
            code, grant = secrets.token_urlsafe(32), secrets.token_urlsafe(16)
            pipe.set(
                self.PREFIX + "code:" + code, self._record(client_id, grant), ex=600
            )
            pipe.set(self.PREFIX + "grant:" + grant, "1", ex=3600)
            codes.append(code)
        pipe.execute()
        return codes

    def refresh_tokens(self, client_id: str, count: int) -> list[str]:
        tokens = []
        pipe = self.client.pipeline(transaction=False)
        for _ in range(count):
            token, grant = secrets.token_urlsafe(32), secrets.token_urlsafe(16)
            pipe.set(
                self.PREFIX + "rt:" + token, self._record(client_id, grant), ex=3600
            )
            pipe.set(self.PREFIX + "grant:" + grant, "1", ex=3600)
            tokens.append(token)
        pipe.execute()
        return tokens
