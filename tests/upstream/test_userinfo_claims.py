"""Kept claims (groups, roles) the ID token lacks come from userinfo."""

from __future__ import annotations

import typing as t

import pytest

from proxy.upstream.base import UpstreamError
from proxy.upstream.entra import EntraProvider
from proxy.upstream.oidc import OIDCProvider

ID_TOKEN_CLAIMS = {"sub": "u1", "email": "a@example.com"}


def provider(
    cls: type[OIDCProvider],
    userinfo: dict[str, t.Any],
    issuer: str = "https://idp.example.com",
) -> OIDCProvider:
    made = cls(
        issuer=issuer,
        client_id="c",
        client_secret="s",  # noqa: S106
        redirect_uri="https://proxy.example.com/oauth2/callback",
        scopes=("openid",),
        extra_claims=("groups", "roles"),
    )
    calls: list[str] = []
    made.metadata = lambda: {"userinfo_endpoint": "https://idp.example.com/ui"}  # type: ignore[method-assign]

    def fake_userinfo(access_token: str) -> dict[str, t.Any]:
        calls.append(access_token)
        return userinfo

    made.userinfo = fake_userinfo  # type: ignore[method-assign]
    made.calls = calls  # type: ignore[attr-defined]
    return made


def test_missing_groups_are_taken_from_userinfo() -> None:
    idp = provider(OIDCProvider, {"sub": "u1", "groups": ["admins"], "other": 1})
    claims = idp.with_userinfo_claims(dict(ID_TOKEN_CLAIMS), "at")
    assert claims == {**ID_TOKEN_CLAIMS, "groups": ["admins"]}


def test_claims_in_the_id_token_need_no_userinfo() -> None:
    idp = provider(OIDCProvider, {"sub": "u1", "groups": ["other"]})
    claims = {**ID_TOKEN_CLAIMS, "groups": ["admins"], "roles": []}
    assert idp.with_userinfo_claims(claims, "at") == claims
    assert idp.calls == []  # type: ignore[attr-defined]


def test_userinfo_for_another_subject_fails_the_login() -> None:
    """OIDC Core §5.3.2: the userinfo sub MUST match the ID token's."""
    idp = provider(OIDCProvider, {"sub": "someone-else", "groups": ["admins"]})
    with pytest.raises(UpstreamError) as caught:
        idp.with_userinfo_claims(dict(ID_TOKEN_CLAIMS), "at")
    assert caught.value.kind == "invalid_response"


def test_entra_never_asks_its_graph_userinfo() -> None:
    idp = provider(
        EntraProvider,
        {"sub": "u1", "groups": ["admins"]},
        issuer="https://login.microsoftonline.com/contoso/v2.0",
    )
    assert idp.with_userinfo_claims(dict(ID_TOKEN_CLAIMS), "at") == ID_TOKEN_CLAIMS
    assert idp.calls == []  # type: ignore[attr-defined]
