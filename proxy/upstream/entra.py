"""Microsoft Entra ID (v2.0 endpoints): tenants, issuers and scope rules.

- Authority: ``https://login.microsoftonline.com/{tenant}/v2.0``, where tenant
  is a tenant ID (GUID), a verified domain, or ``organizations`` / ``common``
  / ``consumers``.
- Discovery for a domain or an alias names another issuer: the tenant GUID,
  or for ``organizations``/``common`` the template
  ``https://login.microsoftonline.com/{tenantid}/v2.0``. An ID token's ``iss``
  then names the user's real tenant, which must be the ``tid`` claim put into
  that template (and ``tid`` must be a GUID); ``organizations`` refuses the
  personal-account tenant, ``consumers`` accepts only it.
- The v2 endpoints take no ``resource`` (or ``audience``) parameter: the
  resource is named in the scopes, one resource per request; refresh tokens
  need ``offline_access``.
- ``email`` is not verified by Entra (it is an attribute any tenant admin can
  set): it counts as verified only for a single-tenant app (the tenant is the
  operator's own) or with ``xms_edov`` (email domain owner verified).
- The user id is ``oid`` (stable per tenant, the same in every app);
  ``sub`` is pairwise per application.
"""

from __future__ import annotations

import re
import typing as t
from urllib.parse import urlsplit

from proxy.config.env import ConfigError
from proxy.upstream.base import UpstreamError
from proxy.upstream.base import is_true
from proxy.upstream.oidc import OIDCProvider

MSA_TENANT_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"


MULTI_TENANT_ALIASES = frozenset({"common", "organizations", "consumers"})


TENANT_TEMPLATE = "{tenantid}"


OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})


GRAPH = "https://graph.microsoft.com"


_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_guid(value: object) -> bool:
    return isinstance(value, str) and _GUID.fullmatch(value) is not None


def scope_resources(scopes: t.Iterable[str]) -> set[str]:
    """The resources a scope list names (`User.Read` is Microsoft Graph's)."""
    resources = set()
    for scope in scopes:
        if scope in OIDC_SCOPES:
            continue
        if "://" in scope:
            head, _, _ = scope.rpartition("/")
            resources.add(head)
        else:
            resources.add(GRAPH)
    return resources


class EntraProvider(OIDCProvider):
    name = "entra"
    claims_from_userinfo = False

    def __init__(
        self, *, allowed_tenants: frozenset[str] = frozenset(), **options: t.Any
    ) -> None:
        # v2.0 has no `resource` parameter; sending one is AADSTS901002.
        options["audience"] = None
        super().__init__(**options)
        parts = urlsplit(self.issuer)
        segments = parts.path.strip("/").split("/")
        if len(segments) != 2 or segments[1] != "v2.0":
            raise ConfigError(
                "OAUTH_ISSUER for OAUTH_PROVIDER=entra must be the v2.0 authority "
                "https://login.microsoftonline.com/<tenant>/v2.0"
            )
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.tenant = segments[0].lower()
        self.allowed_tenants = frozenset(tid.lower() for tid in allowed_tenants)
        if len(scope_resources(self.scopes)) > 1:
            raise ConfigError(
                "OAUTH_SCOPES for Entra may name one resource only (AADSTS28000): "
                + " ".join(self.scopes)
            )

    @property
    def multi_tenant(self) -> bool:
        return self.tenant in MULTI_TENANT_ALIASES

    def _issuer_for(self, tenant: str) -> str:
        return f"{self.origin}/{tenant}/v2.0"

    def accepts_issuer(self, advertised: str) -> bool:
        if advertised.rstrip("/") == self.issuer.rstrip("/"):
            return True
        if self.tenant in ("common", "organizations"):
            return advertised == self._issuer_for(TENANT_TEMPLATE)
        if self.tenant == "consumers":
            return advertised == self._issuer_for(MSA_TENANT_ID)
        # A domain-name authority: discovery names the tenant's GUID.
        tenant = advertised.removeprefix(self.origin + "/").removesuffix("/v2.0")
        return (
            not is_guid(self.tenant)
            and is_guid(tenant)
            and advertised == self._issuer_for(tenant)
        )

    def _tenant_ok(self, tid: object) -> bool:
        if not is_guid(tid):
            return False
        if self.tenant == "organizations" and tid == MSA_TENANT_ID:
            return False
        if self.tenant == "consumers" and tid != MSA_TENANT_ID:
            return False
        return True

    def id_token_issuer_ok(self, iss: object, claims: dict[str, t.Any]) -> bool:
        expected = self.metadata()["issuer"]
        if TENANT_TEMPLATE not in expected:
            return iss == expected and self._tenant_ok(claims.get("tid"))
        # Multi-tenant: the issuer must be the template filled with the token's
        # own tid, never just "any login.microsoftonline.com issuer".
        tid = claims.get("tid")
        return self._tenant_ok(tid) and iss == expected.replace(
            TENANT_TEMPLATE, str(tid)
        )

    def issuer_matches(self, iss: str) -> bool:
        expected = self.metadata()["issuer"]
        if TENANT_TEMPLATE not in expected:
            return super().issuer_matches(iss)
        tenant = iss.removeprefix(self.origin + "/").removesuffix("/v2.0")
        return iss == self._issuer_for(tenant) and self._tenant_ok(tenant)

    def check_claims(self, claims: dict[str, t.Any]) -> None:
        tid = str(claims.get("tid", "")).lower()
        if self.allowed_tenants and tid not in self.allowed_tenants:
            raise UpstreamError(
                "access_denied", f"tenant {tid[:36]} is not in ENTRA_ALLOWED_TENANTS"
            )

    def subject_of(self, claims: dict[str, t.Any]) -> str:
        oid = claims.get("oid")
        if not isinstance(oid, str) or not oid:
            raise UpstreamError(
                "invalid_response", "the ID token has no 'oid' (add the profile scope)"
            )
        return oid

    def email_of(self, claims: dict[str, t.Any]) -> tuple[str | None, bool]:
        email = claims.get("email")
        if not isinstance(email, str) or not email:
            return None, False
        if is_true(claims.get("email_verified")) or is_true(claims.get("xms_edov")):
            return email, True
        # Single tenant: the operator's own directory set the address.
        return email, not self.multi_tenant
