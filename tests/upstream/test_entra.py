"""Microsoft Entra ID (v2.0): tenant issuers, multi-tenant validation, scopes.

The stand-in follows Microsoft's documentation:
- "OpenID Connect on the Microsoft identity platform"
  (https://learn.microsoft.com/entra/identity-platform/v2-protocols-oidc):
  discovery at `https://login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration`;
  for `common`/`organizations` its `issuer` is the template
  `https://login.microsoftonline.com/{tenantid}/v2.0`, and apps validate the
  token's `iss` against it with the token's `tid`.
- "ID token claims reference" (https://learn.microsoft.com/entra/identity-platform/id-token-claims-reference):
  `tid` (tenant GUID; `9188040d-6c67-4c5b-b112-36a304b66dad` for personal
  accounts), `oid` (stable user id), `sub` (pairwise per app), `email`
  (not verified), `xms_edov` (email domain owner verified).
- "Scopes and permissions" (https://learn.microsoft.com/entra/identity-platform/scopes-oidc):
  v2.0 takes no `resource` parameter; `offline_access` for refresh tokens;
  one resource per request (AADSTS28000).
"""

from __future__ import annotations

import typing as t

import pytest

from proxy.config.env import ConfigError
from proxy.config.settings import Settings
from proxy.upstream.entra import MSA_TENANT_ID
from proxy.upstream.factory import EntraProvider
from proxy.upstream.factory import build_provider

from .standins import OIDCStandIn
from .standins import access_claims
from .standins import come_back
from .standins import start_login
from .standins import upstream_params

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
OID = "00000000-0000-0000-66f3-3332eca7ea81"


def entra(server: t.Any, tenant: str, *, token_tid: str | None = None) -> OIDCStandIn:
    """Entra's discovery for an authority, issuing tokens for `token_tid`."""
    origin = server.url_for("").rstrip("/")
    advertised = (
        f"{origin}/{{tenantid}}/v2.0"
        if tenant in ("common", "organizations")
        else f"{origin}/{token_tid or tenant}/v2.0"
    )
    tid = token_tid or tenant
    return OIDCStandIn(
        server,
        path=f"/{tenant}/v2.0",
        issuer=advertised,
        token_issuer=f"{origin}/{tid}/v2.0",
        auth_methods=("client_secret_post", "private_key_jwt", "client_secret_basic"),
    )


def entra_settings(
    base: Settings, server: t.Any, tenant: str, **changes: t.Any
) -> Settings:
    origin = server.url_for("").rstrip("/")
    return base.replace(
        upstream_provider="entra",
        upstream_issuer=f"{origin}/{tenant}/v2.0",
        upstream_audience="https://mcp.example.com/mcp",
        **changes,
    )


def claims_for(tid: str, **extra: t.Any) -> dict[str, t.Any]:
    return {"sub": "pairwise-sub", "oid": OID, "tid": tid, "name": "Megan", **extra}


def log_in(oauth: t.Any, idp: OIDCStandIn, claims: dict[str, t.Any]) -> t.Any:
    flow = start_login(oauth)
    code, _ = idp.login(flow.upstream_url, claims)
    return flow, come_back(oauth, flow, code=code)


def test_single_tenant_login_uses_oid_and_sends_no_resource(
    httpserver: t.Any, provider_settings: Settings, make_oauth: t.Any
) -> None:
    """entra|<oid>; no resource/audience parameter even with OAUTH_AUDIENCE set."""
    idp = entra(httpserver, TENANT)
    oauth = make_oauth(entra_settings(provider_settings, httpserver, TENANT))
    flow, query = log_in(oauth, idp, claims_for(TENANT, email="m@contoso.example"))
    params = upstream_params(flow)
    assert "resource" not in params
    assert "audience" not in params
    assert "offline_access" in params["scope"].split()
    claims = access_claims(oauth.token(flow).get_json()["access_token"])
    assert claims["sub"] == f"entra|{OID}"
    # Single tenant: the operator's own directory vouches for the address.
    assert claims["email_verified"] is True


@pytest.mark.parametrize("tenant", ["organizations", "common"])
def test_multi_tenant_issuer_is_the_template_with_the_tokens_tid(
    httpserver: t.Any, provider_settings: Settings, make_oauth: t.Any, tenant: str
) -> None:
    """organizations/common: iss = template filled with tid; email unverified."""
    idp = entra(httpserver, tenant, token_tid=OTHER_TENANT)
    oauth = make_oauth(entra_settings(provider_settings, httpserver, tenant))
    flow, query = log_in(
        oauth, idp, claims_for(OTHER_TENANT, email="x@fabrikam.example")
    )
    assert "code" in query
    claims = access_claims(oauth.token(flow).get_json()["access_token"])
    assert claims["email_verified"] is False


def test_multi_tenant_issuer_must_name_the_tokens_own_tenant(
    httpserver: t.Any, provider_settings: Settings, make_oauth: t.Any
) -> None:
    """A token whose iss names one tenant and tid another is refused."""
    idp = entra(httpserver, "organizations", token_tid=OTHER_TENANT)
    oauth = make_oauth(entra_settings(provider_settings, httpserver, "organizations"))
    _, query = log_in(oauth, idp, claims_for(TENANT))
    assert query["error"] == "server_error"


def test_organizations_refuses_personal_accounts(
    httpserver: t.Any, provider_settings: Settings, make_oauth: t.Any
) -> None:
    """organizations: the personal-account tenant (MSA) is not let in."""
    idp = entra(httpserver, "organizations", token_tid=MSA_TENANT_ID)
    oauth = make_oauth(entra_settings(provider_settings, httpserver, "organizations"))
    _, query = log_in(oauth, idp, claims_for(MSA_TENANT_ID))
    assert query["error"] == "server_error"


def test_allowed_tenants(
    httpserver: t.Any, provider_settings: Settings, make_oauth: t.Any
) -> None:
    """ENTRA_ALLOWED_TENANTS: another tenant's user gets access_denied."""
    idp = entra(httpserver, "organizations", token_tid=OTHER_TENANT)
    oauth = make_oauth(
        entra_settings(
            provider_settings,
            httpserver,
            "organizations",
            entra_allowed_tenants=frozenset({TENANT}),
        )
    )
    _, query = log_in(oauth, idp, claims_for(OTHER_TENANT))
    assert query["error"] == "access_denied"


def test_xms_edov_verifies_email_for_domain_allow_list(
    httpserver: t.Any, provider_settings: Settings, make_oauth: t.Any
) -> None:
    """Multi-tenant: only xms_edov makes an email count for ALLOWED_EMAIL_DOMAINS."""
    idp = entra(httpserver, "organizations", token_tid=OTHER_TENANT)
    oauth = make_oauth(
        entra_settings(
            provider_settings,
            httpserver,
            "organizations",
            allowed_email_domains=frozenset({"fabrikam.example"}),
        )
    )
    claims = claims_for(OTHER_TENANT, email="x@fabrikam.example")
    assert log_in(oauth, idp, claims)[1]["error"] == "access_denied"
    assert "code" in log_in(oauth, idp, {**claims, "xms_edov": True})[1]


def test_domain_authority_accepts_its_guid_issuer(
    httpserver: t.Any, provider_settings: Settings, make_oauth: t.Any
) -> None:
    """A verified-domain authority: discovery names the tenant GUID; login works."""
    idp = entra(httpserver, "contoso.example", token_tid=TENANT)
    oauth = make_oauth(entra_settings(provider_settings, httpserver, "contoso.example"))
    assert "code" in log_in(oauth, idp, claims_for(TENANT))[1]


def test_missing_oid_is_refused(
    httpserver: t.Any, provider_settings: Settings, make_oauth: t.Any
) -> None:
    """No oid (profile scope missing): no identity, server_error."""
    idp = entra(httpserver, TENANT)
    oauth = make_oauth(entra_settings(provider_settings, httpserver, TENANT))
    claims = {k: v for k, v in claims_for(TENANT).items() if k != "oid"}
    assert log_in(oauth, idp, claims)[1]["error"] == "server_error"


@pytest.mark.parametrize(
    ("issuer", "scopes"),
    [
        ("https://login.microsoftonline.com/common", ("openid",)),
        (
            "https://login.microsoftonline.com/common/v2.0",
            ("openid", "User.Read", "api://x/read"),
        ),
    ],
)
def test_v1_authority_and_mixed_resources_are_config_errors(
    provider_settings: Settings, issuer: str, scopes: tuple[str, ...]
) -> None:
    """A v1 authority or scopes for two resources stop the start."""
    with pytest.raises(ConfigError):
        build_provider(
            provider_settings.replace(
                upstream_provider="entra",
                upstream_issuer=issuer,
                upstream_scopes=scopes,
            )
        )


def test_entra_tenant_id_builds_the_authority() -> None:
    """ENTRA_TENANT_ID alone is enough: the v2.0 authority is derived."""
    settings = Settings.from_env(
        {
            "PUBLIC_URL": "https://mcp.example.com",
            "OAUTH_PROVIDER": "entra",
            "ENTRA_TENANT_ID": TENANT,
            "OAUTH_CLIENT_ID": "c",
            "OAUTH_CLIENT_SECRET": "s",
        }
    )
    assert (
        settings.upstream_issuer == f"https://login.microsoftonline.com/{TENANT}/v2.0"
    )
    provider = build_provider(settings)
    assert isinstance(provider, EntraProvider)
    assert not provider.multi_tenant
