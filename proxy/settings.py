"""Settings: one typed, frozen object built once at start-up from the environment.

Only this module reads ``os.environ``. A missing or malformed value raises
:class:`ConfigError` naming the variable and what to put there, so a bad deploy
stops at boot instead of failing on the first login.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from urllib.parse import urlsplit

from .resources import canonical_resource

DEFAULT_UPSTREAM_SCOPES = "openid profile email offline_access"
DEFAULT_KEY_PREFIX = "mcpoauth:"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it and the fix."""


@dataclass(frozen=True, slots=True)
class StaticClient:
    """A client registered by the operator instead of through DCR."""

    client_id: str
    redirect_uris: tuple[str, ...]
    client_name: str
    client_secret_hash: str | None = None
    scope: str | None = None
    #: A resource server allowed to call /oauth2/introspect (RFC 7662 §4).
    can_introspect: bool = False


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the proxy is configured with. Built by :meth:`from_env`."""

    public_url: str
    upstream_issuer: str
    upstream_client_id: str
    upstream_client_secret: str
    resource: str
    secret_key: bytes
    upstream_scopes: tuple[str, ...] = tuple(DEFAULT_UPSTREAM_SCOPES.split())
    upstream_audience: str | None = None
    upstream_timeout_seconds: float = 10.0
    dynamic_registration: bool = True
    redis_url: str | None = None
    key_prefix: str = DEFAULT_KEY_PREFIX
    mcp_path: str = "/mcp"
    mcp_scopes: tuple[str, ...] = ("mcp",)
    access_token_ttl_seconds: int = 3600
    refresh_token_ttl_seconds: int = 30 * 86400
    refresh_token_max_lifetime_seconds: int = 90 * 86400
    refresh_grace_seconds: int = 30
    code_ttl_seconds: int = 120
    code_replay_tolerance_seconds: int = 3
    client_ttl_seconds: int = 90 * 86400
    consent_remember_seconds: int = 30 * 86400
    trusted_redirect_uris: frozenset[str] = frozenset()
    allowed_redirect_schemes: frozenset[str] = frozenset()
    static_clients: tuple[StaticClient, ...] = ()
    signing_key_pem: str | None = None
    max_registration_bytes: int = 16 * 1024
    # Gateway mode: the proxy serves MCP_PATH itself and forwards to this URL.
    backend_url: str | None = None
    required_scopes: tuple[str, ...] = ()
    allowed_origins: frozenset[str] = frozenset()
    forward_user_header: str = "X-Forwarded-User"
    forward_email_header: str = "X-Forwarded-Email"
    forward_upstream_token: bool = False
    backend_connect_timeout_seconds: float = 5.0
    backend_read_timeout_seconds: float = 300.0
    max_mcp_body_bytes: int = 10 * 1024 * 1024
    # The upstream provider (proxy/providers/): which kind, who may log in, and
    # which upstream claims are copied into access tokens.
    upstream_provider: str = "oidc"
    #: None = the provider's default (raw `sub` for oidc, "<provider>|" otherwise).
    subject_prefix: str | None = None
    allowed_emails: frozenset[str] = frozenset()
    allowed_email_domains: frozenset[str] = frozenset()
    token_extra_claims: tuple[str, ...] = ()
    github_allowed_orgs: tuple[str, ...] = ()
    github_api_url: str | None = None
    google_hosted_domain: str | None = None
    entra_allowed_tenants: frozenset[str] = frozenset()
    secret_key_generated: bool = field(default=False, compare=False)

    @property
    def issuer(self) -> str:
        """Our issuer: byte-identical in metadata, PRM, `iss` and tokens."""
        return self.public_url

    @property
    def insecure_loopback(self) -> bool:
        """True for an http loopback PUBLIC_URL (development): cookies lose Secure."""
        return urlsplit(self.public_url).scheme == "http"

    def url(self, path: str) -> str:
        return self.public_url + path

    @property
    def gateway(self) -> bool:
        return self.backend_url is not None

    def origin_allowed(self, origin: str) -> bool:
        """PRM-15: our own origin, loopback origins, and MCP_ALLOWED_ORIGINS."""
        if "*" in self.allowed_origins or origin in self.allowed_origins:
            return True
        try:
            parts = urlsplit(origin)
        except ValueError:  # "http://[::1" and the like
            return False
        own = urlsplit(self.public_url)
        if (parts.scheme, parts.netloc) == (own.scheme, own.netloc):
            return True
        return parts.scheme == "http" and is_loopback_host(parts.hostname or "")

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read and check every setting; raise ConfigError on the first bad one."""
        env = _Env(environ)
        public_url = env.url("PUBLIC_URL", required=True)
        mcp_path = env.str("MCP_PATH", "/mcp")
        if not mcp_path.startswith("/") or mcp_path.endswith("/") and mcp_path != "/":
            raise ConfigError(
                "MCP_PATH must start with '/' and not end with one, e.g. MCP_PATH=/mcp"
            )
        audience_set = bool(environ.get("OAUTH_AUDIENCE", "").strip())
        resource_text = env.url("OAUTH_AUDIENCE") or public_url + mcp_path
        resource = canonical_resource(resource_text)
        if resource is None:
            raise ConfigError(
                "OAUTH_AUDIENCE must be the absolute URL of the protected MCP "
                "endpoint, e.g. OAUTH_AUDIENCE=https://mcp.example.com/mcp"
            )
        upstream_audience: str | None
        if "OAUTH_UPSTREAM_AUDIENCE" in environ:
            upstream_audience = environ["OAUTH_UPSTREAM_AUDIENCE"].strip() or None
        else:
            # Sent as typed: Auth0 compares API identifiers byte for byte.
            raw_audience = environ.get("OAUTH_AUDIENCE", "").strip()
            upstream_audience = raw_audience if audience_set else None

        redis_url = env.str("REDIS_URL", "") or None
        secret_key, generated = env.secret_key("PROXY_SECRET_KEY", redis_url)
        provider = _provider_settings(env, environ)
        settings = cls(
            public_url=public_url,
            upstream_client_id=env.str("OAUTH_CLIENT_ID", required=True),
            upstream_client_secret=env.str("OAUTH_CLIENT_SECRET", required=True),
            resource=resource,
            secret_key=secret_key,
            secret_key_generated=generated,
            **provider,
            upstream_audience=upstream_audience,
            upstream_timeout_seconds=env.number("UPSTREAM_TIMEOUT_SECONDS", 10, 1, 60),
            dynamic_registration=env.bool("OAUTH_USE_DYNAMIC_REGISTRATION", True),
            redis_url=redis_url,
            key_prefix=env.str("REDIS_KEY_PREFIX", DEFAULT_KEY_PREFIX),
            mcp_path=mcp_path,
            mcp_scopes=tuple(env.str("MCP_SCOPES", "mcp").split()),
            access_token_ttl_seconds=env.int(
                "ACCESS_TOKEN_TTL_SECONDS", 3600, 60, 86400
            ),
            refresh_token_ttl_seconds=env.int(
                "REFRESH_TOKEN_TTL_SECONDS", 30 * 86400, 300, 365 * 86400
            ),
            refresh_token_max_lifetime_seconds=env.int(
                "REFRESH_TOKEN_MAX_LIFETIME_SECONDS", 90 * 86400, 300, 3650 * 86400
            ),
            refresh_grace_seconds=env.int("REFRESH_GRACE_SECONDS", 30, 0, 120),
            code_ttl_seconds=env.int("AUTH_CODE_TTL_SECONDS", 120, 10, 300),
            code_replay_tolerance_seconds=env.int(
                "CODE_REPLAY_TOLERANCE_SECONDS", 3, 0, 30
            ),
            client_ttl_seconds=env.int(
                "CLIENT_TTL_SECONDS", 90 * 86400, 0, 3650 * 86400
            ),
            consent_remember_seconds=env.int(
                "CONSENT_REMEMBER_SECONDS", 30 * 86400, 0, 365 * 86400
            ),
            trusted_redirect_uris=frozenset(env.list("TRUSTED_REDIRECT_URIS")),
            allowed_redirect_schemes=frozenset(
                s.lower() for s in env.list("ALLOWED_REDIRECT_SCHEMES")
            ),
            static_clients=env.static_clients("STATIC_CLIENTS_FILE"),
            signing_key_pem=env.file_or_value("SIGNING_KEY"),
            backend_url=env.url("MCP_BACKEND_URL", normalise=False, private_http=True)
            or None,
            required_scopes=tuple(env.str("MCP_REQUIRED_SCOPES", "").split()),
            allowed_origins=frozenset(env.list("MCP_ALLOWED_ORIGINS")),
            forward_user_header=env.header("FORWARD_USER_HEADER", "X-Forwarded-User"),
            forward_email_header=env.header(
                "FORWARD_EMAIL_HEADER", "X-Forwarded-Email"
            ),
            forward_upstream_token=env.bool("FORWARD_UPSTREAM_TOKEN", False),
            backend_connect_timeout_seconds=env.number(
                "MCP_BACKEND_CONNECT_TIMEOUT_SECONDS", 5, 0.1, 60
            ),
            backend_read_timeout_seconds=env.number(
                "MCP_BACKEND_READ_TIMEOUT_SECONDS", 300, 1, 86400
            ),
        )
        if (
            settings.refresh_token_max_lifetime_seconds
            < settings.refresh_token_ttl_seconds
        ):
            raise ConfigError(
                "REFRESH_TOKEN_MAX_LIFETIME_SECONDS must be at least "
                "REFRESH_TOKEN_TTL_SECONDS"
            )
        return settings


PROVIDERS = ("oidc", "github", "google", "auth0", "okta", "keycloak", "entra")
#: Providers whose OAUTH_ISSUER may be left out (GitHub: its web URL).
_DEFAULT_ISSUERS = {
    "github": "https://github.com",
    "google": "https://accounts.google.com",
}
_DEFAULT_SCOPES = {
    # GitHub is not OIDC: its scopes are API permissions.
    "github": "read:user user:email",
    # Google refuses `offline_access`; access_type=offline asks for refresh tokens.
    "google": "openid email profile",
}
_CLAIM_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,128}")


def _provider_settings(env: _Env, environ: Mapping[str, str]) -> dict[str, Any]:
    """OAUTH_PROVIDER and the variables that go with it (config/providers/)."""
    from .upstream import RESERVED_CLAIMS

    provider = env.str("OAUTH_PROVIDER", "oidc").lower()
    if provider not in PROVIDERS:
        raise ConfigError(
            f"OAUTH_PROVIDER={provider!r} is not known: use one of "
            + ", ".join(PROVIDERS)
        )
    issuer = env.url(
        "OAUTH_ISSUER",
        required=provider not in _DEFAULT_ISSUERS and provider != "entra",
        normalise=False,
    )
    if not issuer and provider == "entra":
        tenant = env.str("ENTRA_TENANT_ID")
        if not re.fullmatch(r"[A-Za-z0-9.-]{1,128}", tenant):
            raise ConfigError(
                "OAUTH_PROVIDER=entra needs ENTRA_TENANT_ID (the Directory (tenant) "
                "ID, or organizations / common) or OAUTH_ISSUER="
                "https://login.microsoftonline.com/<tenant>/v2.0"
            )
        issuer = f"https://login.microsoftonline.com/{tenant}/v2.0"
    claims = tuple(env.list("TOKEN_EXTRA_CLAIMS"))
    for claim in claims:
        if claim in RESERVED_CLAIMS or not _CLAIM_NAME.fullmatch(claim):
            raise ConfigError(
                f"TOKEN_EXTRA_CLAIMS: {claim!r} cannot be copied into access tokens "
                "(the proxy sets " + ", ".join(sorted(RESERVED_CLAIMS)) + " itself)"
            )
    only_for = {
        "GITHUB_ALLOWED_ORGS": "github",
        "GITHUB_API_URL": "github",
        "GOOGLE_HOSTED_DOMAIN": "google",
        "ENTRA_ALLOWED_TENANTS": "entra",
    }
    for name, owner in only_for.items():
        if env.str(name) and provider != owner:
            # An allow-list silently ignored would let everyone in.
            raise ConfigError(f"{name} works only with OAUTH_PROVIDER={owner}")
    domains = frozenset(
        d.lower().lstrip("@") for d in env.list("ALLOWED_EMAIL_DOMAINS")
    )
    return {
        "upstream_provider": provider,
        "upstream_issuer": issuer or _DEFAULT_ISSUERS[provider],
        "upstream_scopes": tuple(
            env.str(
                "OAUTH_SCOPES", _DEFAULT_SCOPES.get(provider, DEFAULT_UPSTREAM_SCOPES)
            ).split()
        ),
        "subject_prefix": environ["OAUTH_SUBJECT_PREFIX"].strip()
        if "OAUTH_SUBJECT_PREFIX" in environ
        else None,
        "allowed_emails": frozenset(e.lower() for e in env.list("ALLOWED_EMAILS")),
        "allowed_email_domains": frozenset(d.lower().lstrip("@") for d in domains),
        "token_extra_claims": claims,
        "github_allowed_orgs": tuple(env.list("GITHUB_ALLOWED_ORGS")),
        "github_api_url": env.url("GITHUB_API_URL") or None,
        "google_hosted_domain": env.str("GOOGLE_HOSTED_DOMAIN").lower() or None,
        "entra_allowed_tenants": frozenset(
            tid.lower() for tid in env.list("ENTRA_ALLOWED_TENANTS")
        ),
    }


def is_loopback_host(host: str) -> bool:
    """RFC 8252 §7.3 loopback hosts, plus `localhost` (see design: J2)."""
    host = host.lower()
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Env:
    """Typed readers over the environment; each error names its variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def _raw(self, name: str) -> str:
        return self._environ.get(name, "").strip()

    def str(self, name: str, default: str = "", *, required: bool = False) -> str:
        value = self._raw(name)
        if not value:
            if required:
                raise ConfigError(
                    f"{name} is not set: put it in the environment or .env"
                )
            return default
        return value

    def url(
        self,
        name: str,
        *,
        required: bool = False,
        normalise: bool = True,
        private_http: bool = False,
    ) -> str:
        value = self.str(name, required=required)
        if not value:
            return ""
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"{name}={value!r} is not an absolute http(s) URL, "
                f"e.g. {name}=https://auth.example.com"
            )
        if parts.query or parts.fragment:
            raise ConfigError(f"{name} must not have a query or fragment")
        if parts.username or parts.password:
            raise ConfigError(f"{name} must not contain a user name or password")
        try:
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            raise ConfigError(f"{name}={value!r} has an invalid port") from None
        # GEN-1: plain http only for loopback (development).
        # A gateway backend usually sits on a private network: http is fine there.
        if (
            parts.scheme == "http"
            and not private_http
            and not is_loopback_host(parts.hostname)
        ):
            raise ConfigError(
                f"{name}={value!r} uses http on a non-loopback host; use https "
                "(http is allowed only for localhost, 127.0.0.1 and [::1])"
            )
        if not normalise:
            # An upstream issuer is compared byte for byte with what it advertises.
            return value
        # One spelling of our own URLs everywhere: no trailing slash, lowercase host.
        return f"{parts.scheme}://{parts.netloc.lower()}{parts.path.rstrip('/')}"

    def header(self, name: str, default: str) -> str:
        value = self.str(name, default)
        if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", value):
            raise ConfigError(f"{name}={value!r} is not an HTTP header name")
        return value

    def bool(self, name: str, default: bool) -> bool:
        value = self._raw(name).lower()
        if not value:
            return default
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}={value!r} is not a boolean: use true or false")

    def int(self, name: str, default: int, low: int, high: int) -> int:
        value = self._raw(name)
        if not value:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"{name}={value!r} is not a whole number") from None
        if not low <= number <= high:
            raise ConfigError(f"{name}={number} is out of range: use {low}..{high}")
        return number

    def number(self, name: str, default: float, low: float, high: float) -> float:
        value = self._raw(name)
        if not value:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{name}={value!r} is not a number") from None
        if not low <= number <= high:
            raise ConfigError(f"{name}={number} is out of range: use {low}..{high}")
        return number

    def list(self, name: str) -> list[str]:
        return [item for item in self._raw(name).replace(",", " ").split() if item]

    def file_or_value(self, name: str) -> str | None:
        """`NAME` holds the value itself, or `NAME_FILE` a path to it."""
        value = self._raw(name)
        path = self._raw(name + "_FILE")
        if value and path:
            raise ConfigError(f"set either {name} or {name}_FILE, not both")
        if path:
            try:
                with open(path, encoding="utf-8") as fh:
                    return fh.read()
            except OSError as exc:
                raise ConfigError(
                    f"{name}_FILE={path!r} cannot be read: {exc}"
                ) from None
        return value.replace("\\n", "\n") or None

    def secret_key(self, name: str, redis_url: str | None) -> tuple[bytes, bool]:
        value = self._raw(name)
        hint = (
            f'generate one with: python -c "import secrets; '
            f'print(secrets.token_hex(32))" and set {name}'
        )
        if not value:
            if redis_url:
                # Several processes share the store: they must share the key too.
                raise ConfigError(f"{name} is required with REDIS_URL; {hint}")
            return secrets.token_bytes(32), True
        try:
            key = bytes.fromhex(value)
        except ValueError:
            raise ConfigError(f"{name} must be hex; {hint}") from None
        if len(key) < 32:
            raise ConfigError(
                f"{name} must be at least 32 bytes (64 hex digits); {hint}"
            )
        return key, False

    def static_clients(self, name: str) -> tuple[StaticClient, ...]:
        path = self._raw(name)
        if not path:
            return ()
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{name}={path!r} is not a readable JSON file: {exc}"
            ) from None
        if not isinstance(data, list):
            raise ConfigError(f"{name}: the file must hold a JSON list of clients")
        clients = []
        for index, item in enumerate(data):
            where = f"{name}: client #{index}"
            if not isinstance(item, dict) or not isinstance(item.get("client_id"), str):
                raise ConfigError(f"{where} needs a string 'client_id'")
            uris = item.get("redirect_uris")
            if (
                not isinstance(uris, list)
                or not uris
                or not all(isinstance(u, str) for u in uris)
            ):
                raise ConfigError(f"{where} needs a non-empty list 'redirect_uris'")
            secret_hash = item.get("client_secret_sha256")
            if secret_hash is not None and not (
                isinstance(secret_hash, str)
                and re.fullmatch(r"[0-9a-f]{64}", secret_hash)
            ):
                raise ConfigError(
                    f"{where}: 'client_secret_sha256' must be 64 lowercase hex digits "
                    "(the SHA-256 of the secret)"
                )
            if item.get("introspection") is True and not secret_hash:
                raise ConfigError(
                    f"{where}: an introspection client needs 'client_secret_sha256'"
                )
            clients.append(
                StaticClient(
                    client_id=item["client_id"],
                    redirect_uris=tuple(uris),
                    client_name=str(item.get("client_name") or item["client_id"]),
                    client_secret_hash=secret_hash,
                    scope=item.get("scope"),
                    can_introspect=item.get("introspection") is True,
                )
            )
        return tuple(clients)
