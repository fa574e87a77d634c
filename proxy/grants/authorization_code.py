"""grant_type=authorization_code (OAuth 2.1 §4.1.3): a code becomes tokens, once."""

from __future__ import annotations

import logging
import time
import typing as t

from proxy.clients.authentication import ClientCredentials
from proxy.grants.base import TokenGrant
from proxy.grants.base import _check_resource
from proxy.grants.base import _client
from proxy.grants.base import _refresh_ttl
from proxy.grants.token_response import token_response
from proxy.keys.keyring import equal
from proxy.keys.keyring import sha256_hex
from proxy.oauth import pkce
from proxy.oauth.errors import InvalidGrantError
from proxy.oauth.errors import InvalidRequestError
from proxy.oauth.opaque_tokens import new_opaque
from proxy.oauth.opaque_tokens import split_opaque
from proxy.oauth.params import single
from proxy.store import RedeemResult

if t.TYPE_CHECKING:
    from werkzeug.datastructures import MultiDict

log = logging.getLogger(__name__)


class AuthorizationCodeGrant(TokenGrant):
    GRANT_TYPE = "authorization_code"

    def issue(
        self, form: MultiDict[str, str], credentials: ClientCredentials
    ) -> dict[str, t.Any]:
        app = self.app
        code = single(form, "code")
        verifier = single(form, "code_verifier")
        redirect_uri = single(form, "redirect_uri")
        if code is None:
            raise InvalidRequestError("'code' is required.")
        # OAuth 2.1 §4.1.3 / RFC 7636 §4.5: the verifier is required (CODE-3).
        if verifier is None:
            raise InvalidRequestError("'code_verifier' is required.")
        parts = split_opaque(code)
        stored_client, grant = (None, None)
        if parts:
            stored_client, grant = app.store.load_client_and_grant(
                credentials.client_id, parts[0], app.settings.client_ttl_seconds
            )
        else:
            stored_client = app.clients.find(credentials.client_id)
        client = _client(app, credentials, stored_client)
        if parts is None or grant is None:
            raise InvalidGrantError("Invalid or expired 'code'.", reason="code_unknown")
        grant_id, secret = parts
        code_hash = sha256_hex(secret)
        if not equal(code_hash, grant.code_hash):
            raise InvalidGrantError("Invalid or expired 'code'.", reason="code_unknown")
        # OAuth 2.1 §4.1.3: the code was issued to this authenticated client (CODE-2).
        if grant.client_id != client.client_id:
            raise InvalidGrantError(
                "Invalid or expired 'code'.", reason="client_mismatch"
            )
        if not pkce.is_valid_verifier(verifier):
            raise InvalidRequestError(
                "Malformed 'code_verifier'.", reason="pkce_format"
            )
        # RFC 7636 §4.6: if the values are not equal, "invalid_grant" MUST be returned.
        if not pkce.verify(verifier, grant.code_challenge):
            raise InvalidGrantError("Invalid 'code_verifier'.", reason="pkce_mismatch")
        # CODE-9: if sent, redirect_uri must equal the authorization request's.
        if redirect_uri is not None and redirect_uri != grant.redirect_uri:
            raise InvalidGrantError(
                "Invalid 'redirect_uri'.", reason="redirect_mismatch"
            )
        _check_resource(form, grant)

        now = int(time.time())
        issue_refresh = "refresh_token" in client.grant_types
        refresh_token, refresh_secret = new_opaque(grant_id)
        result = app.store.redeem_code(
            grant_id,
            code_hash=code_hash,
            now=now,
            tolerance=app.settings.code_replay_tolerance_seconds,
            refresh_hash=sha256_hex(refresh_secret) if issue_refresh else None,
            ttl=_refresh_ttl(app, grant, now),
        )
        if result is RedeemResult.REPLAYED:
            # OAuth 2.1 §4.1.3: a reused code SHOULD revoke what it issued (CODE-6).
            log.warning("code replay: grant %s revoked", grant_id[:8])
            raise InvalidGrantError(
                "Invalid or expired 'code'.", reason="code_replayed"
            )
        if result is not RedeemResult.OK:
            raise InvalidGrantError(
                "Invalid or expired 'code'.", reason=result.value.lower()
            )
        return token_response(
            app,
            sub=grant.sub,
            claims=grant.claims,
            client_id=client.client_id,
            scope=grant.scope,
            resource=grant.resource,
            grant_id=grant_id,
            refresh_token=refresh_token if issue_refresh else None,
            now=now,
        )
