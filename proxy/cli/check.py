"""`python -m proxy check`: is the upstream set up right, and what goes where.

Loads the settings, reaches the identity provider (discovery, JWKS, a token
request with a made-up code to learn whether the client credentials are
accepted), then prints what the operator must set at the provider and in the
MCP clients. Every finding has a stable code (``issuer_mismatch``,
``client_rejected``, ...); the exit status is 1 if any finding failed, 2 if
the settings do not load, else 0.
"""

from __future__ import annotations

import socket
import typing as t
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import redis
import redis.cluster

from proxy.clients import catalog as client_catalog
from proxy.clients.registry import static_records
from proxy.config.env import ConfigError
from proxy.config.settings import Settings
from proxy.config.settings import config_errors
from proxy.oauth.redirect_uris import is_allowed_redirect_uri
from proxy.oauth.redirect_uris import is_loopback_host
from proxy.store import connection
from proxy.store.faults import STORE_ERRORS
from proxy.upstream.base import UpstreamError
from proxy.upstream.factory import EntraProvider
from proxy.upstream.factory import GitHubProvider
from proxy.upstream.factory import build_provider
from proxy.upstream.oidc import OIDCProvider

if t.TYPE_CHECKING:
    import requests

    from proxy.clients.catalog import Catalog
    from proxy.clients.catalog import CatalogEntry
    from proxy.upstream.base import UpstreamProvider


OK, WARN, FAIL = "ok", "warn", "FAIL"


CHATGPT_REDIRECT_URIS = (
    "https://chatgpt.com/connector_platform_oauth_redirect",
    "https://chatgpt.com/connector/oauth/{id}",
)


CLAUDE_REDIRECT_URIS = (
    "https://claude.ai/api/mcp/auth_callback",
    "https://claude.com/api/mcp/auth_callback",
)


#: Where each provider's callback URL is set: (console, field name).
CONSOLES = {
    "oidc": ("your identity provider's admin console", "redirect (callback) URI"),
    "github": (
        "GitHub > Settings > Developer settings > OAuth Apps (or GitHub Apps)",
        "Authorization callback URL",
    ),
    "google": (
        "Google Cloud console > APIs & Services > Credentials > "
        "OAuth 2.0 Client ID (type: Web application)",
        "Authorized redirect URIs",
    ),
    "auth0": (
        "Auth0 Dashboard > Applications > your Regular Web Application > Settings",
        "Allowed Callback URLs",
    ),
    "okta": (
        "Okta Admin Console > Applications > your OIDC Web Application",
        "Sign-in redirect URIs",
    ),
    "keycloak": (
        "Keycloak admin console > your realm > Clients > your client "
        "(Client authentication: On)",
        "Valid redirect URIs",
    ),
    "entra": (
        "Microsoft Entra admin center > App registrations > your app > "
        "Authentication > Web",
        "Redirect URIs",
    ),
}


#: What a made-up code at the token endpoint tells about our credentials.
_CREDENTIALS_OK = frozenset({"invalid_grant", "bad_verification_code"})


_CREDENTIALS_BAD = frozenset({"invalid_client", "incorrect_client_credentials"})


@dataclass(frozen=True, slots=True)
class Finding:
    level: str
    code: str
    message: str


class Report:
    """The findings so far, in order."""

    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def add(self, level: str, code: str, message: str) -> None:
        self.findings.append(Finding(level, code, message))

    @property
    def failed(self) -> bool:
        return any(f.level == FAIL for f in self.findings)

    def codes(self, level: str | None = None) -> list[str]:
        return [f.code for f in self.findings if level in (None, f.level)]


def main(environ: Mapping[str, str], out: t.TextIO) -> int:
    """Load the settings from ``environ``, run every check, print the report."""
    errors = config_errors(environ)
    if not errors:
        try:
            settings = Settings.from_env(environ)
            client_catalog.load(settings)
        except ConfigError as exc:
            errors = [exc]
    if errors:
        # All of them at once, not one per run.
        for error in errors:
            out.write(f"FAIL  [config] {error}\n")
        return 2
    report = run(settings)
    write(report, settings, out)
    return 1 if report.failed else 0


def run(
    settings: Settings,
    *,
    provider: UpstreamProvider | None = None,
    session: requests.Session | None = None,
) -> Report:
    """Every check this command knows; network failures become findings."""
    report = Report()
    if provider is None:
        try:
            provider = build_provider(settings, session)
        except ConfigError as exc:
            report.add(FAIL, "config", str(exc))
            return report
    if isinstance(provider, OIDCProvider):
        if not _check_discovery(provider, report):
            return report
        _check_jwks(provider, report)
    if isinstance(provider, (OIDCProvider, GitHubProvider)):
        _check_credentials(provider, report)
    _check_setup(settings, provider, report)
    _check_tool_rules(settings, report)
    _check_servers(settings, report)
    _check_catalog(settings, report)
    _check_store(settings, report)
    return report


def _check_discovery(provider: OIDCProvider, report: Report) -> bool:
    url = provider.discovery_url
    try:
        document = provider._get_json(url)
    except UpstreamError as exc:
        report.add(
            FAIL,
            "discovery_unreachable",
            f"GET {url} failed ({exc.detail}). OAUTH_ISSUER must be the issuer "
            "exactly, e.g. https://<tenant>.auth0.com/, "
            "https://<org>.okta.com/oauth2/default, https://<host>/realms/<realm>, "
            "https://login.microsoftonline.com/<tenant>/v2.0",
        )
        return False
    advertised = document.get("issuer")
    if not isinstance(advertised, str) or not provider.accepts_issuer(advertised):
        report.add(
            FAIL,
            "issuer_mismatch",
            f"the discovery document names issuer {advertised!r}, but "
            f"OAUTH_ISSUER={provider.issuer!r}; set OAUTH_ISSUER to the issuer "
            "exactly as the IdP spells it",
        )
        return False
    try:
        metadata = provider.metadata()
    except UpstreamError as exc:
        report.add(FAIL, "discovery_invalid", exc.detail)
        return False
    report.add(OK, "discovery", f"{url}: issuer {advertised}")
    insecure = [
        f"{name}={value}"
        for name in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
        if isinstance(value := metadata.get(name), str) and _insecure(value)
    ]
    if insecure:
        report.add(
            FAIL,
            "insecure_issuer",
            "the IdP advertises plain http on a non-loopback host: "
            + ", ".join(insecure)
            + ". Behind a TLS-terminating proxy, make the IdP trust the "
            "forwarded headers (Keycloak: KC_PROXY_HEADERS=xforwarded)",
        )
    _check_capabilities(provider, metadata, report)
    return True


def _check_capabilities(
    provider: OIDCProvider, metadata: dict[str, t.Any], report: Report
) -> None:
    grants = metadata.get("grant_types_supported")
    if isinstance(grants, list):
        if "authorization_code" not in grants:
            report.add(
                FAIL,
                "grant_type_unsupported",
                "the IdP does not offer the authorization_code grant",
            )
        elif "refresh_token" not in grants:
            report.add(
                WARN, "no_refresh_grant", "the IdP does not offer refresh tokens"
            )
    methods = metadata.get("token_endpoint_auth_methods_supported")
    if isinstance(methods, list) and not {
        "client_secret_basic",
        "client_secret_post",
    } & set(methods):
        report.add(
            FAIL,
            "client_auth_unsupported",
            "the token endpoint takes neither client_secret_basic nor "
            f"client_secret_post (it offers {', '.join(map(str, methods))})",
        )
    challenges = metadata.get("code_challenge_methods_supported")
    if isinstance(challenges, list) and "S256" not in challenges:
        report.add(WARN, "pkce_unsupported", "the IdP does not list PKCE S256")
    offered = metadata.get("scopes_supported")
    if isinstance(offered, list):
        missing = [s for s in provider.scopes if s not in offered]
        if missing:
            report.add(
                WARN,
                "scope_unsupported",
                f"OAUTH_SCOPES asks for {' '.join(missing)}, which the IdP does "
                "not list in scopes_supported",
            )


def _check_jwks(provider: OIDCProvider, report: Report) -> None:
    try:
        keys = provider.jwks()
    except UpstreamError as exc:
        report.add(FAIL, "jwks_unreachable", f"the IdP's JWKS: {exc.detail}")
        return
    if not keys.keys:
        report.add(FAIL, "jwks_empty", "the IdP's JWKS holds no keys")
        return
    report.add(OK, "jwks", f"{len(keys.keys)} signing key(s)")


def _check_credentials(provider: OIDCProvider | GitHubProvider, report: Report) -> None:
    try:
        error = provider.probe_client()
    except UpstreamError as exc:
        report.add(FAIL, "token_endpoint_unreachable", exc.detail)
        return
    if error in _CREDENTIALS_OK:
        report.add(
            OK,
            "client_credentials",
            "the token endpoint refused only the test code: OAUTH_CLIENT_ID and "
            "OAUTH_CLIENT_SECRET are accepted",
        )
    elif error in _CREDENTIALS_BAD:
        report.add(
            FAIL,
            "client_rejected",
            f"the IdP answered {error}: OAUTH_CLIENT_ID or OAUTH_CLIENT_SECRET is "
            "wrong (or the secret expired)",
        )
    elif error == "unauthorized_client":
        report.add(
            FAIL,
            "grant_type_not_enabled",
            "the IdP answered unauthorized_client: enable the Authorization Code "
            "grant for this client (or the client id is unknown)",
        )
    elif error == "redirect_uri_mismatch":
        report.add(
            FAIL,
            "redirect_uri_mismatch",
            f"the IdP does not accept {provider.redirect_uri} as this app's "
            "callback URL",
        )
    else:
        report.add(
            WARN,
            "client_unverified",
            f"the token endpoint answered {error!r}; the credentials could not "
            "be verified",
        )


def _check_setup(
    settings: Settings, provider: UpstreamProvider, report: Report
) -> None:
    kind = settings.upstream_provider
    scopes = set(settings.upstream_scopes)
    if kind not in ("github", "google") and "offline_access" not in scopes:
        report.add(
            WARN,
            "no_refresh_scope",
            "OAUTH_SCOPES lacks offline_access: the IdP may issue no refresh "
            "token, and the proxy cannot notice a user removed upstream",
        )
    if kind == "auth0" and not settings.upstream_audience:
        report.add(
            WARN,
            "auth0_no_audience",
            "no audience is sent to Auth0 (set OAUTH_AUDIENCE or "
            "OAUTH_UPSTREAM_AUDIENCE to your Auth0 API identifier)",
        )
    if kind == "keycloak" and "/realms/" not in settings.upstream_issuer:
        report.add(
            WARN,
            "keycloak_issuer",
            "a Keycloak issuer looks like https://<host>/realms/<realm>",
        )
    if (
        isinstance(provider, EntraProvider)
        and provider.multi_tenant
        and not settings.entra_allowed_tenants
        and not (settings.allowed_emails or settings.allowed_email_domains)
    ):
        report.add(
            WARN,
            "open_tenant",
            f"tenant '{provider.tenant}' lets any Microsoft account in; set "
            "ENTRA_ALLOWED_TENANTS or ALLOWED_EMAIL_DOMAINS",
        )
    allow_listed = bool(settings.allowed_emails or settings.allowed_email_domains)
    if kind == "google" and not (allow_listed or settings.google_hosted_domain):
        report.add(
            WARN,
            "open_login",
            "OAUTH_PROVIDER=google with no allow-list: any Google account can "
            "log in; set ALLOWED_EMAILS, ALLOWED_EMAIL_DOMAINS or "
            "GOOGLE_HOSTED_DOMAIN",
        )
    if kind == "github" and not (allow_listed or settings.github_allowed_orgs):
        report.add(
            WARN,
            "open_login",
            "OAUTH_PROVIDER=github with no allow-list: any GitHub account can "
            "log in; set GITHUB_ALLOWED_ORGS, ALLOWED_EMAILS or "
            "ALLOWED_EMAIL_DOMAINS",
        )
    if not settings.gateway and settings.resource == settings.url(settings.mcp_path):
        report.add(
            WARN,
            "mcp_url_not_served",
            f"the MCP server URL printed below, {settings.resource}, is this "
            "proxy's own, but the gateway is off (MCP_BACKEND_URL is not set), "
            "so nothing answers there: set MCP_BACKEND_URL to your MCP server, "
            "or set OAUTH_AUDIENCE to the MCP server's own URL",
        )
    if not settings.dynamic_registration and not settings.static_clients:
        report.add(
            WARN,
            "no_clients",
            "OAUTH_USE_DYNAMIC_REGISTRATION=false and no STATIC_CLIENTS_FILE: "
            "no MCP client can register or connect (ChatGPT needs registration)",
        )


def _check_tool_rules(settings: Settings, report: Report) -> None:
    """Each server's tool scopes and policy loaded (a bad one failed as config)."""
    for server in settings.servers:
        several = bool(settings.mcp_servers)
        scopes_name = f"{server.path} tool_scopes" if several else "MCP_TOOL_SCOPES"
        policy_name = f"{server.path} tool_policy" if several else "MCP_TOOL_POLICY"
        tool_scopes, policy = server.tool_scopes, server.tool_policy
        if tool_scopes is not None:
            report.add(
                OK,
                "tool_scopes",
                f"{scopes_name} is valid: {len(tool_scopes.exact)} tools and "
                f"{len(tool_scopes.globs)} globs need scopes; step-up can reach "
                + " ".join(tool_scopes.scopes),
            )
        source = server.tool_policy_source
        if policy is not None and source is not None:
            reread = " (re-read when the file changes)" if source.path else ""
            report.add(
                OK,
                "tool_policy",
                f"{policy_name} is valid{reread}: {len(policy.rules)} rules, first "
                f"match wins, default {policy.default}; groups are read from "
                + ", ".join(settings.tool_policy_claims),
            )
        if (tool_scopes is not None or policy is not None) and not settings.gateway:
            _warn_forward_auth_rules(report)


def _warn_forward_auth_rules(report: Report) -> None:
    """Forward-auth mode (no backend; MCP_SERVERS always has one) never sees
    the body: its tool rules bind only requests that name their tool in
    Mcp-Method/Mcp-Name (decision J65)."""
    report.add(
        WARN,
        "tool_rules_need_headers",
        "MCP_BACKEND_URL is not set, so MCP_TOOL_SCOPES/MCP_TOOL_POLICY apply "
        "at /oauth2/forward-auth, which never sees the request body: only "
        "requests naming their tool in Mcp-Method/Mcp-Name headers (MCP "
        "2026-07-28 clients) are checked; 2025-11-25 clients send none and "
        "pass on their token alone, and tools/list is never filtered. For "
        "rules that hold for every client, use gateway mode (MCP_BACKEND_URL)",
    )


#: Seconds `check` waits for a backend to accept a connection.
BACKEND_CONNECT_TIMEOUT_SECONDS = 3.0


def _check_servers(settings: Settings, report: Report) -> None:
    """Each MCP server fronted: path, backend, audience, scopes, policy file;
    a backend that accepts no connection is a warning (it may start later)."""
    for server in settings.servers:
        policy = server.tool_policy_source
        policy_file = policy.path if policy and policy.path else "none"
        if policy and not policy.path:
            policy_file = "inline"
        report.add(
            OK,
            "mcp_server",
            f"{server.path} -> {server.backend_url or '(forward-auth only)'}: "
            f"audience {server.audience}, scopes "
            f"{' '.join(server.offered_scopes) or '(none)'}, "
            f"tool policy {policy_file}",
        )
        if server.backend_url and not _reachable(server.backend_url):
            report.add(
                WARN,
                "backend_unreachable",
                f"{server.path}: the backend {server.backend_url} accepts no "
                "connection; start it, or fix its URL",
            )


def _reachable(url: str) -> bool:
    """True if the backend's host accepts a TCP connection (no request sent)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection(
            (parts.hostname or "", port), timeout=BACKEND_CONNECT_TIMEOUT_SECONDS
        ):
            return True
    except (OSError, ValueError):
        return False


def _check_catalog(settings: Settings, report: Report) -> None:
    """Which catalogued clients can connect with these settings, and why not."""
    try:
        catalog = client_catalog.load(settings)
    except ConfigError as exc:
        report.add(FAIL, "config", str(exc))
        return
    for entry in catalog.entries:
        ways, refusals = admission(settings, catalog, entry)
        label = f"{entry.display_name} ({entry.name})"
        if not ways:
            report.add(
                WARN,
                "client_not_admitted",
                f"{label} cannot connect: {'; '.join(refusals)}",
            )
            continue
        message = f"{label}: admitted {' and '.join(ways)}"
        if refusals:
            message += f"; not {'; '.join(refusals)}"
        pinned = entry.pinned
        if pinned is not None and any(w.startswith("by CIMD") for w in ways):
            message += (
                f"; if {pinned.url} cannot be fetched, its pinned copy "
                f"(reconstructed {pinned.reconstructed_on}) is used"
            )
        report.add(OK, "client_admitted", message)
    if settings.trusted_redirect_uris:
        report.add(
            WARN,
            "trusted_redirect_uris",
            "TRUSTED_REDIRECT_URIS skips the consent page only for static "
            "clients and for metadata-document (CIMD) clients on the redirect "
            "URI's own host or catalogued with it; a DCR registration listing "
            "these URIs still sees the page (docs/decisions.md, J15). "
            "TRUSTED_CLIENTS (e.g. chatgpt,claude) is the better setting: it "
            "names who the client is, not where it sends the user",
        )
    for name in settings.trusted_clients:
        entry = t.cast("CatalogEntry", catalog.get(name))
        ways, _ = admission(settings, catalog, entry)
        verified = [w for w in ways if not w.startswith("by DCR")]
        if verified:
            report.add(
                OK,
                "trusted_client",
                f"{entry.display_name} skips the consent page when it comes "
                f"{' or '.join(verified)}; its DCR registrations still see it",
            )
        else:
            report.add(
                WARN,
                "trusted_client_unverifiable",
                f"TRUSTED_CLIENTS names {name}, but it can come neither by CIMD "
                "nor as a static client here, and a DCR registration is never "
                "trusted: it always sees the consent page",
            )


def admission(
    settings: Settings, catalog: Catalog, entry: CatalogEntry
) -> tuple[list[str], list[str]]:
    """How this client can connect ("by CIMD (...)", "by DCR", "as static
    client x"), and why not in the other ways it could."""
    ways: list[str] = []
    refusals: list[str] = []
    documents = settings.client_documents
    if "cimd" in entry.registers_by:
        hosts = sorted({p.host for p in entry.cimd_urls if p.host})
        denied = [h for h in hosts if not documents.domain_allowed(h)]
        if not documents.enabled:
            refusals.append("by CIMD: CIMD_ENABLED=false")
        elif denied:
            refusals.append(
                f"by CIMD: {', '.join(denied)} is not allowed by "
                "CIMD_ALLOWED_DOMAINS/CIMD_DENIED_DOMAINS"
            )
        else:
            ways.append(f"by CIMD ({', '.join(p.text for p in entry.cimd_urls)})")
    if "dcr" in entry.registers_by:
        dropped = [
            p.text
            for p in entry.redirect_uris
            if not is_allowed_redirect_uri(
                p.example(),
                settings.allowed_redirect_schemes,
                catalog.private_use_redirect_uris,
            )
        ]
        if not settings.dynamic_registration:
            refusals.append("by DCR: OAUTH_USE_DYNAMIC_REGISTRATION=false")
        elif dropped:
            schemes = sorted({uri.partition(":")[0] for uri in dropped})
            refusals.append(
                f"by DCR: its redirect URI {', '.join(dropped)} would be refused "
                f"(ALLOWED_REDIRECT_SCHEMES={','.join(schemes)} allows it)"
            )
        else:
            ways.append("by DCR")
    for record in static_records(settings).values():
        if catalog.identify(record) is entry:
            ways.append(f"as static client {record.client_id}")
    return ways, refusals


def _check_store(settings: Settings, report: Report) -> None:
    options = settings.redis_options
    if not options.configured:
        report.add(
            WARN,
            "embedded_store",
            "REDIS_URL is not set: one process only, state lost on restart",
        )
        return
    where = options.describe()  # never a password
    try:
        client = connection.connect(options)
    except STORE_ERRORS as exc:
        # A cluster client reads the slot map as it is made.
        report.add(FAIL, "redis_unreachable", f"{where}: {exc.__class__.__name__}")
        return
    try:
        client.ping()
    except STORE_ERRORS as exc:
        report.add(FAIL, "redis_unreachable", f"{where}: {exc.__class__.__name__}")
        return
    else:
        report.add(OK, "redis", f"{where} answers")
        for node, node_client in _primaries(client):
            _check_memory_policy(node_client, report, node)
    finally:
        client.close()


def _primaries(client: t.Any) -> list[tuple[str | None, redis.Redis]]:
    """Every primary to ask about memory: a cluster's each (a key may live on
    any of them), else the one client (Sentinel's is the current primary)."""
    if not isinstance(client, redis.cluster.RedisCluster):
        return [(None, client)]
    return [
        (node.name, client.get_redis_connection(node))
        for node in client.get_primaries()  # type: ignore[no-untyped-call]
    ]


#: What to run Redis with, and why (printed with every memory finding).
MEMORY_ADVICE = (
    "recommended: maxmemory-policy noeviction, with a maxmemory that leaves "
    "headroom above the proxy's peak (at the limit, logins and refreshes get "
    "503 and /readyz says out_of_memory until memory is freed; nothing is lost)"
)


def _check_memory_policy(
    client: redis.Redis, report: Report, node: str | None = None
) -> None:
    """Warn when Redis may evict our keys at its memory limit.

    Everything the proxy stores is state, not cache: an evicted grant logs a
    user out, an evicted `keys` record makes a worker mint new signing keys
    (tokens signed with the old ones stop verifying), an evicted rate bucket
    lifts a limit. INFO, not CONFIG GET: managed services often disable CONFIG.
    In a cluster each primary is asked, and named in its findings.
    """

    def add(level: str, code: str, message: str) -> None:
        report.add(level, code, f"{node}: {message}" if node else message)

    try:
        memory = client.info("memory")
    except redis.exceptions.RedisError as exc:
        add(
            WARN,
            "redis_policy_unknown",
            f"INFO memory failed ({exc.__class__.__name__}): check by hand that "
            f"Redis never evicts keys; {MEMORY_ADVICE}",
        )
        return
    policy = str(memory.get("maxmemory_policy", "unknown"))
    maxmemory = int(memory.get("maxmemory", 0) or 0)
    used = int(memory.get("used_memory", 0) or 0)
    evicts = policy.startswith(("allkeys-", "volatile-"))
    if evicts and maxmemory or policy.startswith("allkeys-"):
        add(
            WARN,
            "redis_evicts",
            f"maxmemory-policy is {policy} "
            + (
                f"with maxmemory {_mib(maxmemory)}"
                if maxmemory
                else "(maxmemory 0 today; a limit set later evicts at once)"
            )
            + ": at the limit Redis deletes keys, and the proxy's keys are state, not "
            "cache (an evicted grant logs its user out; an evicted signing-key "
            "record makes a worker mint new keys, and tokens signed with the "
            "old ones stop verifying); " + MEMORY_ADVICE,
        )
    elif evicts:
        add(
            OK,
            "redis_memory",
            f"maxmemory is 0 (no limit), so maxmemory-policy {policy} never "
            "evicts; set it to noeviction before setting a maxmemory; " + MEMORY_ADVICE,
        )
    elif maxmemory:
        share = used / maxmemory
        level = WARN if share > 0.8 else OK
        code = "redis_memory_high" if share > 0.8 else "redis_memory"
        add(
            level,
            code,
            f"maxmemory-policy {policy}, maxmemory {_mib(maxmemory)}, "
            f"{share:.0%} used ({_mib(used)})",
        )
    else:
        add(
            OK,
            "redis_memory",
            f"maxmemory-policy {policy}, maxmemory 0 (no limit: fine on an "
            "instance of its own or a shared one watched by its host; Redis then "
            f"grows until the host runs out of memory); {MEMORY_ADVICE}",
        )


def _mib(size: int) -> str:
    return f"{size / 1048576:.1f} MiB"


def _insecure(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme != "https" and not is_loopback_host(parts.hostname or "")


def write(report: Report, settings: Settings, out: t.TextIO) -> None:
    """The findings, then the instructions, in plain words."""
    kind = settings.upstream_provider
    out.write(
        f"mcp-oauth-proxy check  (OAUTH_PROVIDER={kind}, "
        f"PUBLIC_URL={settings.public_url})\n\n"
    )
    for finding in report.findings:
        out.write(f"  {finding.level:<4}  [{finding.code}] {finding.message}\n")
    out.write("\n" + instructions(settings) + "\n")
    failures = len(report.codes(FAIL))
    out.write(
        f"\n{failures} problem(s) found.\n" if failures else "\nNo problems found.\n"
    )


def instructions(settings: Settings) -> str:
    """What to set at the IdP, and what to enter in ChatGPT and Claude."""
    kind = settings.upstream_provider
    console, field = CONSOLES[kind]
    callback = settings.url("/oauth2/callback")
    scopes = " ".join(settings.upstream_scopes)
    lines = [
        f"At the identity provider ({console}):",
        f"  {field}: {callback}",
        "    (exactly this: same scheme and host, no trailing slash)",
    ]
    if kind == "github":
        lines += [
            "  Scopes (requested by the proxy): " + scopes,
            "  GitHub App: tick 'Expire user authorization tokens' for refresh "
            "tokens; grant 'Email addresses: read' (and 'Members: read' for "
            "GITHUB_ALLOWED_ORGS)",
        ]
    else:
        lines += [
            "  Application type: web application / confidential client (client secret)",
            "  Grant types: Authorization Code, Refresh Token",
            f"  Scopes: {scopes}",
        ]
    mcp_url = settings.resource
    if len(settings.servers) > 1:
        # MCP_SERVERS: one connector per server, each with its own URL.
        mcp_url = "one of " + ", ".join(s.audience for s in settings.servers)
    lines += [
        "",
        "In ChatGPT (Settings > Connectors > Create, developer mode):",
        f"  MCP server URL: {mcp_url}    Authentication: OAuth",
        "  Leave the OAuth client id/secret empty: ChatGPT registers itself.",
        "  Its redirect URIs: " + ", ".join(CHATGPT_REDIRECT_URIS),
        "",
        "In Claude (Settings > Connectors > Add custom connector):",
        f"  Remote MCP server URL: {mcp_url}",
        "  Its redirect URIs: " + ", ".join(CLAUDE_REDIRECT_URIS),
    ]
    hint = _trusted_clients_hint(settings)
    if hint:
        lines += ["", hint]
    return "\n".join(lines)


def _trusted_clients_hint(settings: Settings) -> str | None:
    """Suggest TRUSTED_CLIENTS only where it works: CIMD on, names this catalog has.

    With CLIENT_CATALOG_FILE naming a catalog without chatgpt or claude, the
    line would suggest a setting that stops the proxy from starting; with CIMD
    off it would change nothing (a DCR registration is never trusted).
    """
    if settings.trusted_clients or not settings.client_documents.enabled:
        return None
    try:
        catalog = client_catalog.load(settings)
    except ConfigError:
        return None
    names = [name for name in ("chatgpt", "claude") if catalog.get(name) is not None]
    if not names:
        return None
    return (
        "To skip the proxy's consent page for them when they identify themselves "
        f"by their metadata document URL (CIMD): TRUSTED_CLIENTS={','.join(names)}"
    )
