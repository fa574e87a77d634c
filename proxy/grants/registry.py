"""The grant types the token endpoint serves, by their `grant_type` value."""

from __future__ import annotations

from proxy.grants.authorization_code import AuthorizationCodeGrant
from proxy.grants.base import TokenGrant
from proxy.grants.refresh_token import RefreshTokenGrant

GRANTS: dict[str, type[TokenGrant]] = {
    AuthorizationCodeGrant.GRANT_TYPE: AuthorizationCodeGrant,
    RefreshTokenGrant.GRANT_TYPE: RefreshTokenGrant,
}
