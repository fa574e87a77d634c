"""grant_type=refresh_token (OAuth 2.1 §4.3): rotation, grace, reuse detection.

Every refresh rotates the token. The previous one is still answered inside the
grace window (:func:`in_grace_window`); any older one is reuse
(:func:`detect_reuse`), which revokes the whole grant.
"""

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
from proxy.grants.base import _client_in_use
from proxy.grants.base import _document_of
from proxy.grants.base import _refresh_ttl
from proxy.grants.base import grant_fields
from proxy.grants.refreshed_identity import refreshed_claims
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
from proxy.observability.trace import enter_trace
from proxy.store import RotateResult
from proxy.store.records import ClientRecord
from proxy.store.records import Grant
from proxy.upstream.base import UpstreamError
from proxy.upstream.base import UpstreamTokens
from proxy.upstream.base import error_for

if t.TYPE_CHECKING:
    from werkzeug.datastructures import MultiDict

log = logging.getLogger(__name__)


# RFC 9700 §4.14.2: "If a refresh token is compromised and subsequently used by
# both the attacker and the legitimate client, one of them will present an
# invalidated refresh token, which will inform the authorization server of the
# breach. The authorization server cannot determine which party submitted the
# invalid refresh token, but it will revoke the active refresh token."
def detect_reuse(grant: Grant, presented_hash: str) -> bool:
    """Is the presented token one this grant has already rotated away?

    The history is kept by ROTATE_REFRESH (proxy/store/scripts.py): the
    previous token's hash, and 12-hex-digit prefixes of the 8 generations
    before it. Outside the grace window any of them is reuse, and the caller
    revokes the whole grant, current token included (OAuth 2.1 §4.3.1, RT-2).
    """
    if grant.rt_prev_hash and equal(presented_hash, grant.rt_prev_hash):
        return True
    return presented_hash[:12] in grant.rt_old


def in_grace_window(
    grant: Grant, presented_hash: str, now: int, grace_seconds: int
) -> bool:
    """The previous token, less than `grace_seconds` after its rotation (J6).

    Answered with the refresh token that rotation issued, so two concurrent
    refreshes with one token both succeed (decision J6 in docs/decisions.md).
    "Less than", so a window of 0 turns it off.
    """
    return bool(
        grant.rt_prev_hash
        and equal(presented_hash, grant.rt_prev_hash)
        and grant.pending
        and now - (grant.rotated_at or 0) < grace_seconds
    )


class _LeaseLapsedError(Exception):
    """The lease this request waited on lapsed with the grant unrotated."""


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
            authenticate_only = app.clients.find_for_auth(
                credentials.client_id,
                basic=credentials.method == "client_secret_basic",
            )
            _client(app, credentials, authenticate_only)
            raise InvalidGrantError("Invalid refresh token.", reason="rt_malformed")
        grant_id, secret = parts
        # Twice at most: a second time when the lease another request held
        # lapsed without a rotation (its worker died, or it gave up).
        for retake in (False, True):
            try:
                return self._issue_once(
                    form, credentials, grant_id, secret, requested_scope, now
                )
            except _LeaseLapsedError:
                if retake:
                    break
                now = int(time.time())
        raise TemporarilyUnavailableError(
            "Refresh in progress, retry shortly.", reason="lease_lapsed"
        )

    def _issue_once(
        self,
        form: MultiDict[str, str],
        credentials: ClientCredentials,
        grant_id: str,
        secret: str,
        requested_scope: str | None,
        now: int,
    ) -> dict[str, t.Any]:
        app = self.app
        lease_holder = random_token(16)
        # One round trip: the client, the grant, and the upstream-refresh lease,
        # which Lua grants only to the grant's own client presenting the
        # current token. Any refusal below gives the lease straight back.
        stored, grant, leased, self.keys_record = (
            app.store.load_client_and_begin_refresh(
                credentials.client_id,
                grant_id,
                presented_hash=sha256_hex(secret),
                now=now,
                lease=int(app.settings.upstream_timeout_seconds) + LEASE_SLACK_SECONDS,
                lease_holder=lease_holder,
                document=_document_of(credentials.client_id),
                # A retake has authenticated already: no keys to read.
                jwks_document=(
                    None
                    if self.client is not None
                    else app.client_assertions.keys_to_read_ahead(credentials)
                ),
            )
        )
        self.keys_read = True
        enter_trace(grant.trace_id if grant else None)
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
        # A retake after a lapsed lease checks again, but authenticates once:
        # a private_key_jwt assertion is spent by its first check.
        if self.client is None:
            self.client = _client(app, credentials, stored)
        client = self.client
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
            app.events.emit(
                "grant.revoked",
                **grant_fields(grant),
                reason="absolute_expiry",
            )
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
        presented = sha256_hex(secret)
        if grant.rt_hash and equal(presented, grant.rt_hash):
            if not leased:
                # Another request is refreshing this grant right now: wait for it
                # and answer from the grace window (decision J6).
                return self._after_concurrent(grant, secret, requested_scope, attempts)
            return self._rotate(grant, secret, requested_scope, now, attempts)
        grace = self.app.settings.refresh_grace_seconds
        if in_grace_window(grant, presented, now, grace):
            return self._from_grace(grant, secret)
        if detect_reuse(grant, presented):
            self._revoke_for_reuse(grant)
        raise InvalidGrantError("Invalid refresh token.", reason="rt_unknown")

    def _revoke_for_reuse(self, grant: Grant) -> t.NoReturn:
        """Reuse revokes the grant: every token it issued stops working (DEL)."""
        self.app.store.revoke_grant(grant.grant_id)
        log.warning("refresh token reuse: grant %s revoked", grant.grant_id[:8])
        self.app.events.emit(
            "refresh.reuse_detected",
            outcome="refused",
            **grant_fields(grant),
        )
        self.app.events.emit(
            "grant.revoked",
            **grant_fields(grant),
            reason="refresh_reuse",
        )
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
            signing_key=self.signing_key(),
            sub=grant.sub,
            claims=grant.claims,
            client_id=grant.client_id,
            scope=pending["scope"],
            resource=grant.resource,
            grant_id=grant.grant_id,
            refresh_token=pending["refresh_token"],
            now=int(time.time()),
            trace_id=grant.trace_id,
        )

    def _after_concurrent(
        self, grant: Grant, secret: str, requested_scope: str | None, attempts: int
    ) -> dict[str, t.Any]:
        app = self.app
        # The lease is at most this long, counted in whole seconds (hence +2):
        # by the deadline, the holder has rotated or the lease has lapsed.
        deadline = (
            time.monotonic()
            + app.settings.upstream_timeout_seconds
            + LEASE_SLACK_SECONDS
            + 2
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
            if fresh.lease_until < int(time.time()):
                # No rotation, and nobody holds the lease any more: its holder
                # gave it back or died (a worker killed mid-refresh). Waiting
                # on would only end in a 503; take the lease over instead.
                raise _LeaseLapsedError(grant.grant_id[:8])
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
        """Refresh upstream and re-read the user from its answer (J66), then swap
        the current token for a new one, with any new claims, atomically."""
        app = self.app
        upstream_sealed, renewed = self._refresh_upstream(grant)
        # J66: the groups the IdP reports now, not the login's; or the stored
        # claims, if the login rules still admit them.
        claims = refreshed_claims(app, grant, renewed)
        if upstream_sealed is not None:
            # The grace window starts when the new pair exists, not when this
            # request began: a slow IdP must not eat a concurrent request's grace.
            now = int(time.time())
        refresh_token, new_secret = new_opaque(grant.grant_id)
        scope = requested_scope and scopes.format_scopes(scopes.parse(requested_scope))
        body = token_response(
            app,
            signing_key=self.signing_key(),
            sub=grant.sub,
            claims=grant.claims if claims is None else claims,
            client_id=grant.client_id,
            scope=scope or grant.scope,
            resource=grant.resource,
            grant_id=grant.grant_id,
            refresh_token=refresh_token,
            now=now,
            trace_id=grant.trace_id,
        )
        result = app.store.rotate_refresh(
            grant.grant_id,
            expected_gen=grant.gen,
            new_hash=sha256_hex(new_secret),
            now=now,
            pending=self._seal_pending(grant, secret, refresh_token, body["scope"]),
            ttl=_refresh_ttl(app, grant, now),
            upstream=upstream_sealed,
            client=_client_in_use(app, grant.client_id),
            claims=claims,
        )
        if result is RotateResult.OK:
            app.events.emit(
                "refresh.rotated",
                **grant_fields(grant),
            )
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

    def _refresh_upstream(
        self, grant: Grant
    ) -> tuple[str | None, UpstreamTokens | None]:
        """The grant's upstream tokens sealed (None to keep them), and the
        IdP's refresh answer (None when there was no upstream refresh).

        Only the IdP's invalid_grant means the user's upstream grant is dead,
        and ends ours; anything else (rate limit, outage, misconfiguration) is
        a 503 that destroys nothing.
        """
        app = self.app
        context = app.store.keys.grant(grant.grant_id)
        try:
            opened = app.keyring.open_current(grant.upstream, context=context)
        except SealError:
            # Sealed under a PROXY_SECRET_KEY we no longer hold: the grant is
            # gone for us (J31). Kept in Redis: restoring the key revives it.
            log.warning(
                "grant %s: upstream tokens open with no PROXY_SECRET_KEY held",
                grant.grant_id[:8],
            )
            raise InvalidGrantError(
                "Invalid refresh token.", reason="upstream_unsealable"
            ) from None
        upstream = UpstreamTokens.from_dict(json.loads(opened.plaintext))
        if not upstream.refresh_token:
            # Nothing to refresh upstream; under an old key, the rotation
            # stores the tokens resealed under the current one.
            return opened.resealed, None
        try:
            renewed = app.upstream.refresh(upstream)
        except UpstreamError as exc:
            app.events.emit(
                "upstream.refresh_failed",
                outcome="error",
                **grant_fields(grant),
                reason=exc.kind,
            )
            if exc.kind == "invalid_grant":
                # The user lost access at the IdP: our grant ends with theirs.
                app.store.revoke_grant(grant.grant_id)
                app.events.emit(
                    "grant.revoked",
                    **grant_fields(grant),
                    reason="upstream_invalid_grant",
                )
                log.info(
                    "upstream refused refresh (%s): grant %s ended",
                    exc.detail,
                    grant.grant_id[:8],
                )
                raise InvalidGrantError(
                    "The grant was revoked upstream.",
                    reason="upstream_invalid_grant",
                ) from exc
            log.warning("upstream refresh failed: %s", exc.cause)
            raise error_for(exc) from exc
        return seal_upstream(app, renewed, context), renewed

    def _seal_pending(
        self, grant: Grant, secret: str, refresh_token: str, scope: str
    ) -> str:
        """The new refresh token, sealed under the presented one (for the grace)."""
        return self.app.keyring.seal_with(
            secret,
            json.dumps({"refresh_token": refresh_token, "scope": scope}).encode(),
            context=self.app.store.keys.grant(grant.grant_id),
        )
