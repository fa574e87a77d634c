"""grant_type=refresh_token (OAuth 2.1 §4.3): rotation, grace, reuse detection."""

from __future__ import annotations

import json
import logging
import time
import typing as t

from proxy.clients.authentication import ClientCredentials
from proxy.grants.base import LEASE_POLL_SECONDS
from proxy.grants.base import LEASE_SLACK_SECONDS
from proxy.grants.base import TokenGrant
from proxy.grants.base import _check_resource
from proxy.grants.base import _client
from proxy.grants.base import _refresh_ttl
from proxy.grants.token_response import seal_upstream
from proxy.grants.token_response import token_response
from proxy.keys.keyring import SealError
from proxy.keys.keyring import equal
from proxy.keys.keyring import random_token
from proxy.keys.keyring import sha256_hex
from proxy.oauth import scopes
from proxy.oauth.errors import InvalidGrantError
from proxy.oauth.errors import InvalidRequestError
from proxy.oauth.errors import InvalidScopeError
from proxy.oauth.errors import TemporarilyUnavailableError
from proxy.oauth.errors import UnauthorizedClientError
from proxy.oauth.opaque_tokens import new_opaque
from proxy.oauth.opaque_tokens import split_opaque
from proxy.oauth.params import single
from proxy.store import RotateResult
from proxy.store.records import ClientRecord
from proxy.store.records import Grant
from proxy.upstream.base import UpstreamError
from proxy.upstream.base import UpstreamTokens

if t.TYPE_CHECKING:
    from werkzeug.datastructures import MultiDict

log = logging.getLogger(__name__)


class RefreshTokenGrant(TokenGrant):
    GRANT_TYPE = "refresh_token"

    def issue(
        self, form: MultiDict[str, str], credentials: ClientCredentials
    ) -> dict[str, t.Any]:
        app = self.app
        token = single(form, "refresh_token")
        if token is None:
            raise InvalidRequestError("'refresh_token' is required.")
        requested_scope = single(form, "scope")
        parts = split_opaque(token)
        now = int(time.time())
        if parts is None:
            authenticate_only = app.clients.find(credentials.client_id)
            _client(app, credentials, authenticate_only)
            raise InvalidGrantError("Invalid refresh token.", reason="rt_malformed")
        grant_id, secret = parts
        lease_holder = random_token(16)
        # One round trip: the client, the grant, and the upstream-refresh lease,
        # which Lua grants only to the grant's own client presenting the
        # current token. Any refusal below gives the lease straight back.
        stored, grant, leased = app.store.load_client_and_begin_refresh(
            credentials.client_id,
            grant_id,
            presented_hash=sha256_hex(secret),
            now=now,
            lease=int(app.settings.upstream_timeout_seconds) + LEASE_SLACK_SECONDS,
            lease_holder=lease_holder,
            ttl=app.settings.client_ttl_seconds,
        )
        try:
            checked = self._check(
                form, credentials, stored, grant, requested_scope, now
            )
            return self._answer(
                checked, secret, requested_scope, leased, now, attempts=3
            )
        except Exception:
            if leased:
                app.store.release_refresh_lease(grant_id, lease_holder)
            raise

    def _check(
        self,
        form: MultiDict[str, str],
        credentials: ClientCredentials,
        stored: ClientRecord | None,
        grant: Grant | None,
        requested_scope: str | None,
        now: int,
    ) -> Grant:
        """The grant, if this client may refresh it now; else raise."""
        app = self.app
        client = _client(app, credentials, stored)
        if "refresh_token" not in client.grant_types:
            raise UnauthorizedClientError("Client may not use the refresh_token grant.")
        if grant is None or grant.gen == 0:
            raise InvalidGrantError("Invalid refresh token.", reason="rt_unknown")
        # OAuth 2.1 §4.3.1: the refresh token is bound to the client (RT-4).
        if grant.client_id != client.client_id:
            raise InvalidGrantError("Invalid refresh token.", reason="client_mismatch")
        _check_resource(form, grant)
        # OAuth 2.1 §4.3.1: the requested scope MUST NOT exceed the original (RT-5).
        if requested_scope is not None and not scopes.is_subset(
            scopes.parse(requested_scope), scopes.parse(grant.scope)
        ):
            raise InvalidScopeError("'scope' exceeds the original grant.")
        if now >= grant.expires_at:
            app.store.revoke_grant(grant.grant_id)
            raise InvalidGrantError(
                "Invalid refresh token.", reason="rt_absolute_expiry"
            )
        return grant

    def _answer(
        self,
        grant: Grant,
        secret: str,
        requested_scope: str | None,
        leased: bool,
        now: int,
        attempts: int,
    ) -> dict[str, t.Any]:
        app = self.app
        presented = sha256_hex(secret)
        if grant.rt_hash and equal(presented, grant.rt_hash):
            if not leased:
                # Another request is refreshing this grant right now: wait for it
                # and answer from the grace window (decision J6 in docs/decisions.md).
                return self._after_concurrent(grant, secret, requested_scope, attempts)
            return self._rotate(grant, secret, requested_scope, now, attempts)
        if grant.rt_prev_hash and equal(presented, grant.rt_prev_hash):
            rotated_at = grant.rotated_at or 0
            # Within the grace window: "less than N seconds ago", so 0 is off.
            if now - rotated_at < app.settings.refresh_grace_seconds and grant.pending:
                return self._from_grace(grant, secret)
            # OAuth 2.1 §4.3.1 / RFC 9700 §4.14.2: reuse of a rotated token
            # revokes the whole grant (RT-2).
            self._revoke_for_reuse(grant)
        # RFC 9700 §4.14.2: an older generation is reuse too.
        if presented[:12] in grant.rt_old:
            self._revoke_for_reuse(grant)
        raise InvalidGrantError("Invalid refresh token.", reason="rt_unknown")

    def _revoke_for_reuse(self, grant: Grant) -> t.NoReturn:
        self.app.store.revoke_grant(grant.grant_id)
        log.warning("refresh token reuse: grant %s revoked", grant.grant_id[:8])
        raise InvalidGrantError("Invalid refresh token.", reason="rt_reused")

    def _from_grace(self, grant: Grant, secret: str) -> dict[str, t.Any]:
        """The refresh token the rotation issued, with a fresh access token.

        Only the new refresh token is kept (sealed under a key derived from
        the previous one): re-signing an access token on this rare path costs
        less than keeping a whole token response in every grant.
        """
        try:
            plain = self.app.keyring.open_with(
                secret,
                grant.pending or "",
                context=self.app.store.keys.grant(grant.grant_id),
            )
        except SealError:
            raise InvalidGrantError(
                "Invalid refresh token.", reason="grace_seal"
            ) from None
        pending = json.loads(plain)
        return token_response(
            self.app,
            sub=grant.sub,
            claims=grant.claims,
            client_id=grant.client_id,
            scope=pending["scope"],
            resource=grant.resource,
            grant_id=grant.grant_id,
            refresh_token=pending["refresh_token"],
            now=int(time.time()),
        )

    def _after_concurrent(
        self, grant: Grant, secret: str, requested_scope: str | None, attempts: int
    ) -> dict[str, t.Any]:
        app = self.app
        deadline = (
            time.monotonic()
            + app.settings.upstream_timeout_seconds
            + LEASE_SLACK_SECONDS
        )
        while time.monotonic() < deadline:
            time.sleep(LEASE_POLL_SECONDS)
            fresh = app.store.load_grant(grant.grant_id)
            if fresh is None:
                raise InvalidGrantError("Invalid refresh token.", reason="rt_revoked")
            if fresh.gen != grant.gen:
                return self._answer(
                    fresh,
                    secret,
                    requested_scope,
                    False,
                    int(time.time()),
                    attempts - 1,
                )
        raise TemporarilyUnavailableError(
            "Refresh in progress, retry shortly.", reason="lease_busy"
        )

    def _rotate(
        self,
        grant: Grant,
        secret: str,
        requested_scope: str | None,
        now: int,
        attempts: int,
    ) -> dict[str, t.Any]:
        app = self.app
        context = app.store.keys.grant(grant.grant_id)
        upstream_sealed = None
        upstream = UpstreamTokens.from_dict(
            json.loads(app.keyring.open(grant.upstream, context=context))
        )
        if upstream.refresh_token:
            try:
                renewed = app.upstream.refresh(upstream)
            except UpstreamError as exc:
                # Only invalid_grant means the user's upstream grant is dead;
                # anything else (rate limit, outage, misconfiguration) is a
                # 503 that destroys nothing.
                if exc.kind == "invalid_grant":
                    # The user lost access at the IdP: our grant ends with theirs.
                    app.store.revoke_grant(grant.grant_id)
                    log.info(
                        "upstream refused refresh (%s): grant %s ended",
                        exc.detail,
                        grant.grant_id[:8],
                    )
                    raise InvalidGrantError(
                        "The grant was revoked upstream.",
                        reason="upstream_invalid_grant",
                    ) from exc
                raise TemporarilyUnavailableError(
                    "The identity provider is unavailable.",
                    reason=f"upstream_{exc.kind}",
                ) from exc
            upstream_sealed = seal_upstream(app, renewed, context)
            # The grace window starts when the new pair exists, not when this
            # request began: a slow IdP must not eat a concurrent request's grace.
            now = int(time.time())
        refresh_token, new_secret = new_opaque(grant.grant_id)
        scope = requested_scope and scopes.format_scopes(scopes.parse(requested_scope))
        body = token_response(
            app,
            sub=grant.sub,
            claims=grant.claims,
            client_id=grant.client_id,
            scope=scope or grant.scope,
            resource=grant.resource,
            grant_id=grant.grant_id,
            refresh_token=refresh_token,
            now=now,
        )
        pending = app.keyring.seal_with(
            secret,
            json.dumps(
                {"refresh_token": refresh_token, "scope": body["scope"]}
            ).encode(),
            context=context,
        )
        result = app.store.rotate_refresh(
            grant.grant_id,
            expected_gen=grant.gen,
            new_hash=sha256_hex(new_secret),
            now=now,
            pending=pending,
            ttl=_refresh_ttl(app, grant, now),
            upstream=upstream_sealed,
        )
        if result is RotateResult.OK:
            return body
        if result is RotateResult.CONFLICT and attempts > 0:
            fresh = app.store.load_grant(grant.grant_id)
            if fresh is not None:
                return self._answer(
                    fresh, secret, requested_scope, False, now, attempts - 1
                )
        raise InvalidGrantError(
            "Invalid refresh token.", reason=f"rotate_{result.value.lower()}"
        )
