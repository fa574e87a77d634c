"""The grant types the token endpoint serves, by their `grant_type` value."""

from __future__ import annotations

import typing as t

from proxy.grants.authorization_code import AuthorizationCodeGrant
from proxy.grants.base import TokenGrant
from proxy.grants.refresh_token import RefreshTokenGrant

if t.TYPE_CHECKING:
    pass


GRANTS: dict[str, type[TokenGrant]] = {
    AuthorizationCodeGrant.GRANT_TYPE: AuthorizationCodeGrant,
    RefreshTokenGrant.GRANT_TYPE: RefreshTokenGrant,
}
