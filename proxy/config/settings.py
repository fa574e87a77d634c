"""Settings: one typed, frozen object built once at start-up from the environment.

Only this module reads ``os.environ``. A missing or malformed value raises
:class:`ConfigError` naming the variable and what to put there, so a bad deploy
stops at boot instead of failing on the first login.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from joserfc.jwk import ECKey

from proxy.config.backend_identity import BackendIdentity
from proxy.config.backend_identity import read_backend_identity
from proxy.config.client_documents import ClientDocuments
from proxy.config.env import ConfigError
from proxy.config.env import EnvReader
from proxy.config.env import StaticClient
from proxy.config.limits import Limits
from proxy.config.mcp_servers import VARIABLE as MCP_SERVERS
from proxy.config.mcp_servers import McpServer
from proxy.config.mcp_servers import read_mcp_servers
from proxy.config.redis_topology import check_cluster_fit
from proxy.config.redis_topology import redis_options
from proxy.config.tool_rules import RulesSource
from proxy.config.tool_rules import read_policy
from proxy.config.tool_rules import read_tool_scopes
from proxy.keys.pinned import KeyMaterialError
from proxy.keys.pinned import parse_signing_keys
from proxy.oauth.redirect_uris import is_loopback_host
from proxy.oauth.resource_indicators import canonical_resource
from proxy.oauth.resource_indicators import matches_resource
from proxy.oauth.tool_policy import ToolPolicy
from proxy.oauth.tool_scopes import ToolScopes
from proxy.store.connection import RedisOptions

DEFAULT_UPSTREAM_SCOPES = "openid profile email offline_access"


DEFAULT_KEY_PREFIX = "mcpoauth:"
DEFAULT_CLIENT_TTL_SECONDS = 90 * 86400


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the proxy is configured with. Built by :meth:`from_env`."""

    public_url: str
    upstream_issuer: str
    upstream_client_id: str
    upstream_client_secret: str
    resource: str
    secret_key: bytes
    #: PROXY_SECRET_KEY_PREVIOUS: older secrets whose sealed values still open
    #: (resealed under ``secret_key`` on use); see README "Rotating keys".
    previous_secret_keys: tuple[bytes, ...] = dataclasses.field(default=(), repr=False)
    upstream_scopes: tuple[str, ...] = tuple(DEFAULT_UPSTREAM_SCOPES.split())
    upstream_audience: str | None = None
    upstream_timeout_seconds: float = 10.0
    dynamic_registration: bool = True
    redis_url: str | None = None
    #: REDIS_MODE and the rest of REDIS_* (TLS, ACL, Sentinel, Cluster); None:
    #: a standalone server at redis_url (what tests build by hand).
    redis: RedisOptions | None = None
    key_prefix: str = DEFAULT_KEY_PREFIX
    mcp_path: str = "/mcp"
    mcp_scopes: tuple[str, ...] = ("mcp",)
    access_token_ttl_seconds: int = 3600
    refresh_token_ttl_seconds: int = 30 * 86400
    refresh_token_max_lifetime_seconds: int = 90 * 86400
    refresh_grace_seconds: int = 30
    code_ttl_seconds: int = 120
    code_replay_tolerance_seconds: int = 3
    client_ttl_seconds: int = DEFAULT_CLIENT_TTL_SECONDS
    consent_remember_seconds: int = 30 * 86400
    #: TRACE_TTL_SECONDS: how long a flow trace is kept in Redis (0 = no traces).
    trace_ttl_seconds: int = 86400
    trusted_redirect_uris: frozenset[str] = frozenset()
    allowed_redirect_schemes: frozenset[str] = frozenset()
    static_clients: tuple[StaticClient, ...] = ()
    #: Operator-pinned signing keys (SIGNING_KEYS): the first signs, all
    #: verify; nothing is generated or stored in Redis when set.
    signing_keys: tuple[ECKey, ...] = ()
    #: Real registrations are ~0.5-1.5 KiB; a larger body is refused unread.
    max_registration_bytes: int = 4096
    # Gateway mode: the proxy serves MCP_PATH itself and forwards to this URL.
    backend_url: str | None = None
    required_scopes: tuple[str, ...] = ()
    allowed_origins: frozenset[str] = frozenset()
    forward_user_header: str = "X-Forwarded-User"
    forward_email_header: str = "X-Forwarded-Email"
    forward_upstream_token: bool = False
    #: MCP_BACKEND_IDENTITY: plain headers, a signed JWT (X-MCP-Identity), or
    #: both; MCP_BACKEND_AUDIENCE: that JWT's `aud` (None: MCP_BACKEND_URL).
    backend_identity: BackendIdentity = BackendIdentity.HEADERS
    backend_audience: str | None = None
    backend_connect_timeout_seconds: float = 5.0
    backend_read_timeout_seconds: float = 300.0
    max_mcp_body_bytes: int = 10 * 1024 * 1024
    #: MCP_SESSION_TTL_SECONDS: how long an Mcp-Session-Id stays bound to its
    #: owner after its last use (proxy/resource_server/session_binding.py).
    mcp_session_ttl_seconds: int = 86400
    #: MCP_TOOL_SCOPES: the scopes each tool needs, and the scope hierarchy.
    tool_scopes: ToolScopes | None = None
    #: MCP_TOOL_POLICY: where the tool policy comes from (a file is re-read
    #: when it changes) and the policy it held at start-up.
    tool_policy_source: RulesSource | None = None
    tool_policy: ToolPolicy | None = None
    #: MCP_SERVERS: several MCP servers, each its own resource (empty: the
    #: one server the fields above describe; see :attr:`servers`).
    mcp_servers: tuple[McpServer, ...] = ()
    #: TOOL_POLICY_CLAIMS: the upstream claims holding groups or roles, kept
    #: in grants and access tokens for the policy's `groups` conditions.
    tool_policy_claims: tuple[str, ...] = ("groups", "roles")
    # The upstream provider (proxy/upstream/): which kind, who may log in, and
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
    limits: Limits = dataclasses.field(default_factory=Limits)
    #: URL client ids (CIMD) and the keys of private_key_jwt clients.
    client_documents: ClientDocuments = dataclasses.field(
        default_factory=ClientDocuments
    )
    #: CLIENT_CATALOG_FILE: the operator's catalog of known MCP clients, in
    #: place of the one shipped in proxy/clients/ (None = the shipped one).
    client_catalog_file: str | None = None
    #: TRUSTED_CLIENTS: catalog names (e.g. chatgpt, claude) that skip consent.
    trusted_clients: tuple[str, ...] = ()
    #: LOG_LEVEL (app and gunicorn) and LOG_FORMAT (text | json).
    log_level: str = "info"
    log_format: str = "text"
    #: AUDIT_LOG: the JSON audit trail on the proxy.audit logger.
    audit_log: bool = True
    #: FLOW_LOG: one readable line per flow step (on in `python -m proxy`).
    flow_log: bool = False
    #: METRICS_TOKEN: /metrics answers only a request bearing it (404 otherwise);
    #: unset, requests and flow events are not counted at all (nobody could read them).
    metrics_token: str | None = None

    @property
    def issuer(self) -> str:
        """Our issuer: byte-identical in metadata, PRM, `iss` and tokens."""
        return self.public_url

    @property
    def servers(self) -> tuple[McpServer, ...]:
        """The protected MCP servers: MCP_SERVERS, else the single one that
        MCP_PATH, OAUTH_AUDIENCE, MCP_SCOPES, MCP_TOOL_* and MCP_BACKEND_URL
        describe (exactly the proxy before MCP_SERVERS existed)."""
        if self.mcp_servers:
            return self.mcp_servers
        return (
            McpServer(
                path=self.mcp_path,
                audience=self.resource,
                scopes=self.mcp_scopes,
                backend_url=self.backend_url,
                backend_audience=self.backend_audience,
                tool_scopes=self.tool_scopes,
                tool_policy_source=self.tool_policy_source,
                tool_policy=self.tool_policy,
            ),
        )

    @property
    def default_server(self) -> McpServer:
        """The first server: forward-auth's when no path names another."""
        return self.servers[0]

    def server_for_resource(self, resource: str) -> McpServer | None:
        """The server whose audience `resource` names (RFC 8707), or None."""
        for server in self.servers:
            if matches_resource(resource, server.audience):
                return server
        return None

    @property
    def offered_scopes(self) -> tuple[str, ...]:
        """MCP_SCOPES plus every scope MCP_TOOL_SCOPES names: what may be granted.

        MCP_SCOPES stays the baseline (the default grant and the 401
        challenge); the tool scopes are reached by step-up. With MCP_SERVERS,
        every server's (the authorization server metadata lists them all).
        """
        offered = [s for server in self.servers for s in server.offered_scopes]
        return tuple(dict.fromkeys(offered))

    @property
    def kept_claims(self) -> tuple[str, ...]:
        """Upstream claims copied into grants and tokens: TOKEN_EXTRA_CLAIMS,
        plus TOOL_POLICY_CLAIMS when a tool policy reads groups."""
        policies = any(s.tool_policy is not None for s in self.servers)
        policy = self.tool_policy_claims if policies else ()
        return tuple(dict.fromkeys([*self.token_extra_claims, *policy]))

    @property
    def insecure_loopback(self) -> bool:
        """True for an http loopback PUBLIC_URL (development): cookies lose Secure."""
        return urlsplit(self.public_url).scheme == "http"

    def url(self, path: str) -> str:
        return self.public_url + path

    @property
    def redis_options(self) -> RedisOptions:
        """What ``connection.connect()`` needs to reach the shared store."""
        return self.redis or RedisOptions(url=self.redis_url)

    @property
    def gateway(self) -> bool:
        return any(s.backend_url is not None for s in self.servers)

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
        env = EnvReader(environ)
        public_url = env.url("PUBLIC_URL", required=True)
        servers = _mcp_servers(env, public_url)
        if servers:
            mcp_path, resource = servers[0].path, servers[0].audience
        else:
            mcp_path = _mcp_path(env)
            resource = _resource(env, public_url + mcp_path)
        upstream_audience = _upstream_audience(environ)
        store = redis_options(env)
        redis_url = store.url
        key_prefix = env.text("REDIS_KEY_PREFIX", DEFAULT_KEY_PREFIX)
        check_cluster_fit(key_prefix, store)
        secret_key = env.secret_key("PROXY_SECRET_KEY", store.configured)
        provider = _provider_settings(env, environ)
        settings = cls(
            public_url=public_url,
            upstream_client_id=env.text("OAUTH_CLIENT_ID", required=True),
            upstream_client_secret=env.text("OAUTH_CLIENT_SECRET", required=True),
            resource=resource,
            secret_key=secret_key,
            previous_secret_keys=env.previous_secret_keys(
                "PROXY_SECRET_KEY_PREVIOUS", secret_key
            ),
            **provider,
            upstream_audience=upstream_audience,
            upstream_timeout_seconds=env.number("UPSTREAM_TIMEOUT_SECONDS", 10, 1, 60),
            dynamic_registration=env.flag("OAUTH_USE_DYNAMIC_REGISTRATION", True),
            redis_url=redis_url,
            redis=store,
            key_prefix=key_prefix,
            mcp_path=mcp_path,
            mcp_scopes=tuple(env.text("MCP_SCOPES", "mcp").split()),
            **_lifetimes(env),
            max_registration_bytes=env.integer(
                "MAX_REGISTRATION_BYTES", 4096, 1024, 1024 * 1024
            ),
            limits=Limits.from_env(env),
            client_documents=ClientDocuments.from_env(env),
            client_catalog_file=env.text("CLIENT_CATALOG_FILE") or None,
            trusted_clients=tuple(n.lower() for n in env.items("TRUSTED_CLIENTS")),
            trusted_redirect_uris=frozenset(env.items("TRUSTED_REDIRECT_URIS")),
            allowed_redirect_schemes=frozenset(
                s.lower() for s in env.items("ALLOWED_REDIRECT_SCHEMES")
            ),
            static_clients=env.static_clients("STATIC_CLIENTS_FILE"),
            signing_keys=_signing_keys(env),
            metrics_token=_metrics_token(env),
            **_gateway_settings(env),
            **read_backend_identity(env, resource=resource),
            **_tool_rules(env),
            **_log_settings(env),
            mcp_servers=servers,
        )
        _check_backend_audiences(settings)
        if (
            settings.refresh_token_max_lifetime_seconds
            < settings.refresh_token_ttl_seconds
        ):
            raise ConfigError(
                "REFRESH_TOKEN_MAX_LIFETIME_SECONDS must be at least "
                "REFRESH_TOKEN_TTL_SECONDS"
            )
        return settings


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")


def _log_settings(env: EnvReader) -> dict[str, Any]:
    """LOG_LEVEL, LOG_FORMAT, AUDIT_LOG, FLOW_LOG."""
    level = env.text("LOG_LEVEL", "info").lower()
    if level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL={level!r}: use one of {', '.join(LOG_LEVELS)}")
    log_format = env.text("LOG_FORMAT", "text").lower()
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT={log_format!r}: use text or json")
    return {
        "log_level": level,
        "log_format": log_format,
        "audit_log": env.flag("AUDIT_LOG", True),
        "flow_log": env.flag("FLOW_LOG", False),
    }


#: A bearer token shorter than this is guessable; `openssl rand -hex 32` is 64.
METRICS_TOKEN_MIN_LENGTH = 16


def _metrics_token(env: EnvReader) -> str | None:
    token = env.text("METRICS_TOKEN") or None
    if token is not None and len(token) < METRICS_TOKEN_MIN_LENGTH:
        raise ConfigError(
            f"METRICS_TOKEN must be at least {METRICS_TOKEN_MIN_LENGTH} characters, "
            "e.g. METRICS_TOKEN=$(openssl rand -hex 32)"
        )
    return token


#: What MCP_SERVERS says per server; set globally too, one would be ignored.
_PER_SERVER = {
    "MCP_PATH": "path",
    "OAUTH_AUDIENCE": "audience",
    "MCP_BACKEND_URL": "backend",
    "MCP_BACKEND_AUDIENCE": "backend_audience",
    "MCP_TOOL_SCOPES": "tool_scopes",
    "MCP_TOOL_POLICY": "tool_policy",
}


def _mcp_servers(env: EnvReader, public_url: str) -> tuple[McpServer, ...]:
    """MCP_SERVERS, or () for the single server of MCP_PATH and the rest."""
    value = env.text(MCP_SERVERS)
    if not value:
        return ()
    for name, key in _PER_SERVER.items():
        if env.text(name):
            raise ConfigError(
                f"{MCP_SERVERS} is set, so {name} would be ignored: give each "
                f"server its own '{key}' in {MCP_SERVERS} and unset {name}"
            )
    return read_mcp_servers(
        value,
        public_url=public_url,
        default_scopes=tuple(env.text("MCP_SCOPES", "mcp").split()),
    )


def _check_backend_audiences(settings: Settings) -> None:
    """J61 for every server: no identity JWT audience is a token audience."""
    audiences = {s.audience.rstrip("/") for s in settings.servers}
    for server in settings.mcp_servers:
        backend = server.backend_audience or server.backend_url or ""
        if backend.rstrip("/") in audiences:
            raise ConfigError(
                f"{MCP_SERVERS}: server {server.path!r}: its backend_audience (or "
                "backend) must not be a protected resource's audience; name the "
                "backend, e.g. its internal URL"
            )


def _mcp_path(env: EnvReader) -> str:
    mcp_path = env.text("MCP_PATH", "/mcp")
    if not mcp_path.startswith("/") or mcp_path.endswith("/") and mcp_path != "/":
        raise ConfigError(
            "MCP_PATH must start with '/' and not end with one, e.g. MCP_PATH=/mcp"
        )
    return mcp_path


def _resource(env: EnvReader, default: str) -> str:
    """The protected resource (RFC 8707): OAUTH_AUDIENCE, else PUBLIC_URL+MCP_PATH."""
    resource = canonical_resource(env.url("OAUTH_AUDIENCE") or default)
    if resource is None:
        raise ConfigError(
            "OAUTH_AUDIENCE must be the absolute URL of the protected MCP "
            "endpoint, e.g. OAUTH_AUDIENCE=https://mcp.example.com/mcp"
        )
    return resource


def _upstream_audience(environ: Mapping[str, str]) -> str | None:
    """The audience asked of the IdP: OAUTH_UPSTREAM_AUDIENCE, else OAUTH_AUDIENCE."""
    if "OAUTH_UPSTREAM_AUDIENCE" in environ:
        return environ["OAUTH_UPSTREAM_AUDIENCE"].strip() or None
    # Sent as typed: Auth0 compares API identifiers byte for byte.
    return environ.get("OAUTH_AUDIENCE", "").strip() or None


def _signing_keys(env: EnvReader) -> tuple[ECKey, ...]:
    """SIGNING_KEYS (or its older alias SIGNING_KEY), each also as ``*_FILE``.

    Parsed here, so bad key material stops the start with one line instead of
    failing the first token request.
    """
    keys, alias = env.file_or_value("SIGNING_KEYS"), env.file_or_value("SIGNING_KEY")
    if keys and alias:
        raise ConfigError(
            "set SIGNING_KEYS (or SIGNING_KEYS_FILE) or its alias SIGNING_KEY "
            "(or SIGNING_KEY_FILE), not both"
        )
    name = "SIGNING_KEYS" if keys else "SIGNING_KEY"
    text = keys or alias
    if text is None:
        return ()
    if env.text(name + "_FILE"):
        name += "_FILE"
    try:
        return parse_signing_keys(text)
    except KeyMaterialError as exc:
        raise ConfigError(
            f"{name}: {exc}; give ES256 (EC P-256) keys as PEM, a JWK or a JWKS"
        ) from None


def access_token_ttl(env: EnvReader) -> int:
    """ACCESS_TOKEN_TTL_SECONDS; also read by ``keys rotate``, which keeps an
    old signing key published until the last token it signed has expired."""
    return env.integer("ACCESS_TOKEN_TTL_SECONDS", 3600, 60, 86400)


def _lifetimes(env: EnvReader) -> dict[str, Any]:
    """Token, code, client and consent lifetimes, each within its bounds."""
    return {
        "access_token_ttl_seconds": access_token_ttl(env),
        "refresh_token_ttl_seconds": env.integer(
            "REFRESH_TOKEN_TTL_SECONDS", 30 * 86400, 300, 365 * 86400
        ),
        "refresh_token_max_lifetime_seconds": env.integer(
            "REFRESH_TOKEN_MAX_LIFETIME_SECONDS", 90 * 86400, 300, 3650 * 86400
        ),
        "refresh_grace_seconds": env.integer("REFRESH_GRACE_SECONDS", 30, 0, 120),
        "code_ttl_seconds": env.integer("AUTH_CODE_TTL_SECONDS", 120, 10, 300),
        "code_replay_tolerance_seconds": env.integer(
            "CODE_REPLAY_TOLERANCE_SECONDS", 3, 0, 30
        ),
        "client_ttl_seconds": read_client_ttl(env),
        "trace_ttl_seconds": env.integer("TRACE_TTL_SECONDS", 86400, 0, 30 * 86400),
        "consent_remember_seconds": env.integer(
            "CONSENT_REMEMBER_SECONDS", 30 * 86400, 0, 365 * 86400
        ),
    }


def _gateway_settings(env: EnvReader) -> dict[str, Any]:
    """Gateway mode (MCP_BACKEND_URL): the backend, who may call, what it is told."""
    return {
        "backend_url": env.url("MCP_BACKEND_URL", normalise=False, private_http=True)
        or None,
        "required_scopes": tuple(env.text("MCP_REQUIRED_SCOPES", "").split()),
        "allowed_origins": frozenset(env.items("MCP_ALLOWED_ORIGINS")),
        "forward_user_header": env.header("FORWARD_USER_HEADER", "X-Forwarded-User"),
        "forward_email_header": env.header("FORWARD_EMAIL_HEADER", "X-Forwarded-Email"),
        "forward_upstream_token": env.flag("FORWARD_UPSTREAM_TOKEN", False),
        "backend_connect_timeout_seconds": env.number(
            "MCP_BACKEND_CONNECT_TIMEOUT_SECONDS", 5, 0.1, 60
        ),
        "backend_read_timeout_seconds": env.number(
            "MCP_BACKEND_READ_TIMEOUT_SECONDS", 300, 1, 86400
        ),
        "mcp_session_ttl_seconds": env.integer(
            "MCP_SESSION_TTL_SECONDS", 86400, 60, 30 * 86400
        ),
    }


def _tool_rules(env: EnvReader) -> dict[str, Any]:
    """MCP_TOOL_SCOPES, MCP_TOOL_POLICY, TOOL_POLICY_CLAIMS (gateway mode)."""
    scopes_source = RulesSource.of("MCP_TOOL_SCOPES", env.text("MCP_TOOL_SCOPES"))
    policy_source = RulesSource.of("MCP_TOOL_POLICY", env.text("MCP_TOOL_POLICY"))
    claims = tuple(env.items("TOOL_POLICY_CLAIMS")) or ("groups", "roles")
    for claim in claims:
        if not _CLAIM_NAME.fullmatch(claim) or claim in _reserved_claims():
            raise ConfigError(
                f"TOOL_POLICY_CLAIMS: {claim!r} cannot hold groups (not a claim "
                "name, or one the proxy sets itself); e.g. TOOL_POLICY_CLAIMS=groups"
            )
    tool_scopes = read_tool_scopes(scopes_source) if scopes_source else None
    return {
        "tool_scopes": tool_scopes,
        "tool_policy_source": policy_source,
        "tool_policy": read_policy(policy_source) if policy_source else None,
        "tool_policy_claims": claims,
    }


def _reserved_claims() -> frozenset[str]:
    from proxy.oauth.access_tokens import RESERVED_CLAIMS

    return RESERVED_CLAIMS


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


def _provider_settings(env: EnvReader, environ: Mapping[str, str]) -> dict[str, Any]:
    """OAUTH_PROVIDER and the variables that go with it (config/providers/)."""
    from proxy.oauth.access_tokens import RESERVED_CLAIMS

    provider = env.text("OAUTH_PROVIDER", "oidc").lower()
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
        tenant = env.text("ENTRA_TENANT_ID")
        if not re.fullmatch(r"[A-Za-z0-9.-]{1,128}", tenant):
            raise ConfigError(
                "OAUTH_PROVIDER=entra needs ENTRA_TENANT_ID (the Directory (tenant) "
                "ID, or organizations / common) or OAUTH_ISSUER="
                "https://login.microsoftonline.com/<tenant>/v2.0"
            )
        issuer = f"https://login.microsoftonline.com/{tenant}/v2.0"
    claims = tuple(env.items("TOKEN_EXTRA_CLAIMS"))
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
        if env.text(name) and provider != owner:
            # An allow-list silently ignored would let everyone in.
            raise ConfigError(f"{name} works only with OAUTH_PROVIDER={owner}")
    domains = frozenset(
        d.lower().lstrip("@") for d in env.items("ALLOWED_EMAIL_DOMAINS")
    )
    return {
        "upstream_provider": provider,
        "upstream_issuer": issuer or _DEFAULT_ISSUERS[provider],
        "upstream_scopes": tuple(
            env.text(
                "OAUTH_SCOPES", _DEFAULT_SCOPES.get(provider, DEFAULT_UPSTREAM_SCOPES)
            ).split()
        ),
        "subject_prefix": environ["OAUTH_SUBJECT_PREFIX"].strip()
        if "OAUTH_SUBJECT_PREFIX" in environ
        else None,
        "allowed_emails": frozenset(e.lower() for e in env.items("ALLOWED_EMAILS")),
        "allowed_email_domains": frozenset(d.lower().lstrip("@") for d in domains),
        "token_extra_claims": claims,
        "github_allowed_orgs": tuple(env.items("GITHUB_ALLOWED_ORGS")),
        "github_api_url": env.url("GITHUB_API_URL") or None,
        "google_hosted_domain": env.text("GOOGLE_HOSTED_DOMAIN").lower() or None,
        "entra_allowed_tenants": frozenset(
            tid.lower() for tid in env.items("ENTRA_ALLOWED_TENANTS")
        ),
    }


#: Stands in for a required variable while the others are checked.
_PLACEHOLDER = "https://placeholder.invalid"
_VARIABLE = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")


def config_errors(environ: Mapping[str, str]) -> list[ConfigError]:
    """Every configuration error at once (for ``check``), not only the first.

    :meth:`Settings.from_env` stops at the first bad variable, which suits the
    app's start-up. Here the settings are read again after each error with the
    variable it names set aside (its default applies; a required one gets a
    placeholder), until they load, or an error names no variable or one
    already set aside. Errors the placeholders cause are not reported.
    """
    env = dict(environ)
    errors: list[ConfigError] = []
    dropped: set[str] = set()
    placeheld: set[str] = set()
    while True:
        try:
            Settings.from_env(env)
        except ConfigError as exc:
            match = _VARIABLE.search(str(exc))
            name = match.group(0) if match else None
            if name is None or name in placeheld:
                if name is None:
                    errors.append(exc)
                return errors
            if name in dropped:  # required: reported once already
                env[name] = _PLACEHOLDER
                placeheld.add(name)
                continue
            errors.append(exc)
            if env.get(name, "").strip():
                env.pop(name)
                dropped.add(name)
            else:
                env[name] = _PLACEHOLDER
                placeheld.add(name)
        else:
            return errors


def read_client_ttl(env: EnvReader) -> int:
    """CLIENT_TTL_SECONDS (0: none); also read by ``python -m proxy admin``,
    whose disabled marks must outlive a registration's sliding TTL."""
    return env.integer(
        "CLIENT_TTL_SECONDS", DEFAULT_CLIENT_TTL_SECONDS, 0, 3650 * 86400
    )
