"""The authorization code (OAuth 2.1 §4.1): issued at the callback, spent once.

:func:`issue_code` stores the grant the user approved and returns its one-time
code; :class:`AuthorizationCodeGrant` (grant_type=authorization_code, §4.1.3)
turns that code into tokens, once.
"""

from __future__ import annotations

import logging
import time
import typing as t

from proxy.clients.authentication import ClientCredentials
from proxy.grants.base import TokenGrant
from proxy.grants.base import _check_resource
from proxy.grants.base import _client
from proxy.grants.base import _client_in_use
from proxy.grants.base import _document_of
from proxy.grants.base import _refresh_ttl
from proxy.grants.token_response import seal_upstream
from proxy.grants.token_response import token_response
from proxy.keys.keyring import equal
from proxy.keys.keyring import sha256_hex
from proxy.oauth import pkce
from proxy.oauth.errors import InvalidGrantError
from proxy.oauth.errors import InvalidRequestError
from proxy.oauth.opaque_tokens import new_grant_id
from proxy.oauth.opaque_tokens import new_opaque
from proxy.oauth.opaque_tokens import split_opaque
from proxy.oauth.params import single
from proxy.observability.trace import enter_trace
from proxy.store import RedeemResult
from proxy.store.records import Grant

if t.TYPE_CHECKING:
    from werkzeug.datastructures import MultiDict

    from proxy.app_state import AppState
    from proxy.store.records import ClientRecord
    from proxy.store.records import Transaction
    from proxy.upstream.base import Identity
    from proxy.upstream.base import UpstreamTokens

log = logging.getLogger(__name__)


def issue_code(
    app: AppState, txn: Transaction, tokens: UpstreamTokens, identity: Identity
) -> str:
    """Store the grant the user approved at the IdP; return its one-time code.

    The code is `<grant_id>.<secret>`: only the secret's SHA-256 is stored, in
    a grant that lives AUTH_CODE_TTL_SECONDS unless the code is redeemed.
    """
    grant_id = new_grant_id()
    code, code_secret = new_opaque(grant_id)
    now = int(time.time())
    grant = Grant(
        grant_id=grant_id,
        client_id=txn.client_id,
        sub=identity.subject,
        claims=identity.token_claims(),
        scope=txn.scope,
        resource=txn.resource,
        redirect_uri=txn.redirect_uri,
        code_challenge=txn.code_challenge,
        code_hash=sha256_hex(code_secret),
        code_exp=now + app.settings.code_ttl_seconds,
        created_at=now,
        expires_at=now + app.settings.refresh_token_max_lifetime_seconds,
        # UP-9: upstream tokens are stored only as AES-GCM ciphertext.
        upstream=seal_upstream(app, tokens, app.store.keys.grant(grant_id)),
        trace_id=txn.trace_id,
    )
    app.store.create_grant(grant, ttl=app.settings.code_ttl_seconds)
    log.info("grant %s created for client %s", grant_id[:8], txn.client_id[:24])
    app.events.emit(
        "grant.created",
        client_id=txn.client_id,
        sub=identity.subject,
        grant=grant_id[:8],
        scope=txn.scope,
    )
    return code


class AuthorizationCodeGrant(TokenGrant):
    GRANT_TYPE = "authorization_code"

    def issue(
        self, form: MultiDict[str, str], credentials: ClientCredentials
    ) -> dict[str, t.Any]:
        code = single(form, "code")
        verifier = single(form, "code_verifier")
        redirect_uri = single(form, "redirect_uri")
        if code is None:
            raise InvalidRequestError("'code' is required.")
        # OAuth 2.1 §4.1.3 / RFC 7636 §4.5: the verifier is required (CODE-3).
        if verifier is None:
            raise InvalidRequestError("'code_verifier' is required.")
        client, grant, secret = self._load(code, credentials)
        code_hash = sha256_hex(secret)
        _check_code(form, client, grant, code_hash, verifier, redirect_uri)
        now = int(time.time())
        refresh_token = self._redeem(client, grant, code_hash, now)
        self.app.events.emit(
            "code.redeemed",
            client_id=client.client_id,
            sub=grant.sub,
            grant=grant.grant_id[:8],
        )
        return token_response(
            self.app,
            signing_key=self.signing_key(),
            sub=grant.sub,
            claims=grant.claims,
            client_id=client.client_id,
            scope=grant.scope,
            resource=grant.resource,
            grant_id=grant.grant_id,
            refresh_token=refresh_token,
            now=now,
            trace_id=grant.trace_id,
        )

    def _load(
        self, code: str, credentials: ClientCredentials
    ) -> tuple[ClientRecord, Grant, str]:
        """The authenticated client, the grant the code names, the code's secret."""
        app = self.app
        parts = split_opaque(code)
        stored_client, grant = (None, None)
        if parts:
            stored_client, grant, self.keys_record = app.store.load_client_and_grant(
                credentials.client_id,
                parts[0],
                document=_document_of(credentials.client_id),
                jwks_document=app.client_assertions.keys_to_read_ahead(credentials),
            )
            self.keys_read = True
            # The attempt this code came from, even if the checks below fail.
            enter_trace(grant.trace_id if grant else None)
        else:
            stored_client = app.clients.find_for_auth(
                credentials.client_id,
                basic=credentials.method == "client_secret_basic",
            )
        client = _client(app, credentials, stored_client)
        if parts is None or grant is None:
            raise InvalidGrantError("Invalid or expired 'code'.", reason="code_unknown")
        return client, grant, parts[1]

    def _redeem(
        self, client: ClientRecord, grant: Grant, code_hash: str, now: int
    ) -> str | None:
        """Spend the code once; the first refresh token, if the client may refresh."""
        app = self.app
        issue_refresh = "refresh_token" in client.grant_types
        refresh_token, refresh_secret = new_opaque(grant.grant_id)
        result = app.store.redeem_code(
            grant.grant_id,
            code_hash=code_hash,
            now=now,
            tolerance=app.settings.code_replay_tolerance_seconds,
            refresh_hash=sha256_hex(refresh_secret) if issue_refresh else None,
            ttl=_refresh_ttl(app, grant, now),
            client=_client_in_use(app, client.client_id),
        )
        if result is RedeemResult.REPLAYED:
            # OAuth 2.1 §4.1.3: a reused code SHOULD revoke what it issued (CODE-6).
            log.warning("code replay: grant %s revoked", grant.grant_id[:8])
            app.events.emit(
                "code.replayed",
                outcome="refused",
                client_id=client.client_id,
                sub=grant.sub,
                grant=grant.grant_id[:8],
            )
            app.events.emit(
                "grant.revoked",
                client_id=client.client_id,
                sub=grant.sub,
                grant=grant.grant_id[:8],
                reason="code_replay",
            )
            raise InvalidGrantError(
                "Invalid or expired 'code'.", reason="code_replayed"
            )
        if result is not RedeemResult.OK:
            raise InvalidGrantError(
                "Invalid or expired 'code'.", reason=result.value.lower()
            )
        return refresh_token if issue_refresh else None


def _check_code(
    form: MultiDict[str, str],
    client: ClientRecord,
    grant: Grant,
    code_hash: str,
    verifier: str,
    redirect_uri: str | None,
) -> None:
    """The code is this grant's, issued to this client, and the verifier fits."""
    if not equal(code_hash, grant.code_hash):
        raise InvalidGrantError("Invalid or expired 'code'.", reason="code_unknown")
    # OAuth 2.1 §4.1.3: the code was issued to this authenticated client (CODE-2).
    if grant.client_id != client.client_id:
        raise InvalidGrantError("Invalid or expired 'code'.", reason="client_mismatch")
    if not pkce.is_valid_verifier(verifier):
        raise InvalidRequestError("Malformed 'code_verifier'.", reason="pkce_format")
    # RFC 7636 §4.6: if the values are not equal, "invalid_grant" MUST be returned.
    if not pkce.verify(verifier, grant.code_challenge):
        raise InvalidGrantError("Invalid 'code_verifier'.", reason="pkce_mismatch")
    # CODE-9: if sent, redirect_uri must equal the authorization request's.
    if redirect_uri is not None and redirect_uri != grant.redirect_uri:
        raise InvalidGrantError("Invalid 'redirect_uri'.", reason="redirect_mismatch")
    _check_resource(form, grant)
