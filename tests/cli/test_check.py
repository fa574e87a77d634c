"""`python -m proxy check`: the success path and every mismatch it detects.

Upstreams are the local OIDC stand-in (tests/upstream/standins.py), the
GitHub stand-in (tests/upstream/test_github.py) and the real
oidc-provider-mock. Assertions use the findings' codes and the exit status.
"""

from __future__ import annotations

import io
import typing as t

import pytest
import redis

from proxy.cli import check
from proxy.cli.demo import main as cli_main
from support.processes import ManagedProcess
from support.processes import start_redis
from tests.e2e.conftest import require_redis_server
from tests.endpoints._helpers import closed_port
from tests.redis_faults import FULL_MAXMEMORY_ARGS
from tests.redis_faults import fill_to_maxmemory
from tests.upstream.standins import OIDCStandIn
from tests.upstream.test_github import CLIENT_ID as GH_CLIENT_ID
from tests.upstream.test_github import CLIENT_SECRET as GH_SECRET
from tests.upstream.test_github import GitHubStandIn

PUBLIC = "https://mcp.example.com"


def env_for(issuer: str, **extra: str) -> dict[str, str]:
    return {
        "PUBLIC_URL": PUBLIC,
        "OAUTH_ISSUER": issuer,
        "OAUTH_CLIENT_ID": "proxy-client",
        "OAUTH_CLIENT_SECRET": "proxy-secret",
        **extra,
    }


def run(environ: dict[str, str]) -> tuple[int, str, check.Report]:
    out = io.StringIO()
    status = check.main(environ, out)
    settings = check.Settings.from_env(environ) if status != 2 else None
    report = check.run(settings) if settings else check.Report()
    return status, out.getvalue(), report


def test_success_prints_what_to_set_where(httpserver: t.Any) -> None:
    """All good: exit 0, and the exact callback URL, MCP URL and client URIs."""
    idp = OIDCStandIn(httpserver)
    status, text, report = run(env_for(idp.issuer))
    assert status == 0
    assert {"discovery", "jwks", "client_credentials"} <= set(report.codes(check.OK))
    assert f"{PUBLIC}/oauth2/callback" in text
    assert f"{PUBLIC}/mcp" in text
    for uri in check.CHATGPT_REDIRECT_URIS + check.CLAUDE_REDIRECT_URIS:
        assert uri in text


def test_success_against_a_real_oidc_provider(idp_url: str) -> None:
    """The real oidc-provider-mock passes every check."""
    status, _, report = run(env_for(idp_url))
    assert status == 0
    assert not report.codes(check.FAIL)


def test_unreachable_discovery(httpserver: t.Any) -> None:
    """Nothing at OAUTH_ISSUER: discovery_unreachable, exit 1."""
    status, _, report = run(env_for(f"http://127.0.0.1:{closed_port()}"))
    assert status == 1
    assert report.codes(check.FAIL) == ["discovery_unreachable"]


def test_wrong_path_is_unreachable_discovery(httpserver: t.Any) -> None:
    """A 404 discovery (e.g. a Keycloak URL without /realms/x) fails the same way."""
    OIDCStandIn(httpserver, path="/realms/mcp")
    status, _, report = run(env_for(httpserver.url_for("/realms")))
    assert status == 1
    assert "discovery_unreachable" in report.codes(check.FAIL)


def test_issuer_mismatch(httpserver: t.Any) -> None:
    """Discovery names another issuer than OAUTH_ISSUER: issuer_mismatch."""
    idp = OIDCStandIn(httpserver, issuer="https://idp.example.com/")
    status, _, report = run(env_for(idp.base))
    assert status == 1
    assert report.codes(check.FAIL) == ["issuer_mismatch"]


def test_http_endpoint_on_public_host(httpserver: t.Any) -> None:
    """An IdP advertising http on a non-loopback host: insecure_issuer."""
    idp = OIDCStandIn(
        httpserver,
        discovery_extra={"authorization_endpoint": "http://idp.example.com/authorize"},
    )
    status, _, report = run(env_for(idp.issuer))
    assert status == 1
    assert "insecure_issuer" in report.codes(check.FAIL)


def test_http_issuer_on_public_host_is_a_config_error() -> None:
    """OAUTH_ISSUER=http://<public host>: the settings refuse it, exit 2."""
    out = io.StringIO()
    assert check.main(env_for("http://idp.example.com"), out) == 2
    assert "[config]" in out.getvalue()


def test_rejected_client_secret(httpserver: t.Any) -> None:
    """The token endpoint says invalid_client: client_rejected."""
    idp = OIDCStandIn(httpserver, client_secret="the-real-one")
    status, _, report = run(env_for(idp.issuer))
    assert status == 1
    assert report.codes(check.FAIL) == ["client_rejected"]


def test_authorization_code_grant_not_enabled(httpserver: t.Any) -> None:
    """unauthorized_client at the token endpoint: grant_type_not_enabled."""
    idp = OIDCStandIn(httpserver)
    idp.token_answer = (400, {"error": "unauthorized_client"})
    status, _, report = run(env_for(idp.issuer))
    assert status == 1
    assert report.codes(check.FAIL) == ["grant_type_not_enabled"]


def test_unreachable_jwks(httpserver: t.Any) -> None:
    """A jwks_uri nobody answers: jwks_unreachable."""
    idp = OIDCStandIn(
        httpserver,
        discovery_extra={"jwks_uri": f"http://127.0.0.1:{closed_port()}/jwks"},
    )
    status, _, report = run(env_for(idp.issuer))
    assert status == 1
    assert "jwks_unreachable" in report.codes(check.FAIL)


def test_private_key_jwt_only_idp(httpserver: t.Any) -> None:
    """A token endpoint without client secrets: client_auth_unsupported."""
    idp = OIDCStandIn(httpserver, auth_methods=("private_key_jwt",))
    status, _, report = run(env_for(idp.issuer))
    assert status == 1
    assert "client_auth_unsupported" in report.codes(check.FAIL)


@pytest.mark.parametrize(
    ("secret", "code", "status"),
    [(GH_SECRET, "client_credentials", 0), ("wrong", "client_rejected", 1)],
)
def test_github_credentials(
    httpserver: t.Any, secret: str, code: str, status: int
) -> None:
    """GitHub: bad_verification_code = credentials fine; incorrect_... = wrong."""
    github = GitHubStandIn(httpserver)
    environ = {
        "PUBLIC_URL": PUBLIC,
        "OAUTH_PROVIDER": "github",
        "OAUTH_ISSUER": github.web_url,
        "GITHUB_API_URL": github.api_url,
        "OAUTH_CLIENT_ID": GH_CLIENT_ID,
        "OAUTH_CLIENT_SECRET": secret,
    }
    got, text, report = run(environ)
    assert got == status
    assert code in report.codes()
    assert f"{PUBLIC}/oauth2/callback" in text


def test_open_entra_tenant_warns(httpserver: t.Any) -> None:
    """organizations with no tenant or email allow-list: an open_tenant warning."""
    origin = httpserver.url_for("").rstrip("/")
    OIDCStandIn(
        httpserver, path="/organizations/v2.0", issuer=f"{origin}/{{tenantid}}/v2.0"
    )
    environ = env_for(f"{origin}/organizations/v2.0", OAUTH_PROVIDER="entra")
    status, _, report = run(environ)
    assert status == 0
    assert "open_tenant" in report.codes(check.WARN)


def test_unreachable_redis(httpserver: t.Any) -> None:
    """REDIS_URL set but nothing answers: redis_unreachable."""
    idp = OIDCStandIn(httpserver)
    environ = env_for(
        idp.issuer,
        REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0",
        PROXY_SECRET_KEY="00" * 32,
    )
    status, _, report = run(environ)
    assert status == 1
    assert report.codes(check.FAIL) == ["redis_unreachable"]


def test_cli_runs_check(httpserver: t.Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m proxy check` reads the environment and exits with the status."""
    idp = OIDCStandIn(httpserver, client_secret="other")
    for name, value in env_for(idp.issuer).items():
        monkeypatch.setenv(name, value)
    assert cli_main(["check"]) == 1


# -- Redis' memory policy, against real redis-servers --------------------------------


@pytest.fixture
def redis_with() -> t.Iterator[t.Callable[[list[str]], str]]:
    """Start a redis-server with the given options; its URL. All stop after."""
    require_redis_server()
    started: list[ManagedProcess] = []

    def start(args: list[str]) -> str:
        started.append(start_redis(extra_args=args))
        return started[-1].url

    try:
        yield start
    finally:
        for proc in started:
            proc.close()


def _store_findings(httpserver: t.Any, url: str) -> tuple[str, check.Report]:
    idp = OIDCStandIn(httpserver)
    environ = env_for(
        idp.issuer,
        REDIS_URL=url,
        PROXY_SECRET_KEY="00" * 32,
        # The MCP server lives elsewhere: no mcp_url_not_served among the findings.
        OAUTH_AUDIENCE="https://tools.example.com/mcp",
    )
    status, text, report = run(environ)
    assert status == 0, text
    return text, report


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl", "allkeys-lfu"])
def test_an_evicting_policy_with_a_limit_warns(
    httpserver: t.Any, redis_with: t.Callable[[list[str]], str], policy: str
) -> None:
    """Redis would delete grants or the signing keys at its limit: redis_evicts."""
    url = redis_with(["--maxmemory", "64mb", "--maxmemory-policy", policy])
    text, report = _store_findings(httpserver, url)
    assert report.codes(check.WARN) == ["redis_evicts"]
    assert policy in text
    assert "noeviction" in text


def test_noeviction_with_a_limit_is_ok(
    httpserver: t.Any, redis_with: t.Callable[[list[str]], str]
) -> None:
    url = redis_with(["--maxmemory", "64mb", "--maxmemory-policy", "noeviction"])
    text, report = _store_findings(httpserver, url)
    assert "redis_memory" in report.codes(check.OK)
    assert not report.codes(check.WARN)
    assert "64.0 MiB" in text


def test_no_limit_is_ok_whatever_the_policy(
    httpserver: t.Any, redis_with: t.Callable[[list[str]], str]
) -> None:
    """maxmemory 0 and a volatile-* policy: nothing is evicted, so no warning;
    the advice is printed."""
    url = redis_with(["--maxmemory", "0", "--maxmemory-policy", "volatile-lru"])
    text, report = _store_findings(httpserver, url)
    assert "redis_memory" in report.codes(check.OK)
    assert not report.codes(check.WARN)
    assert "noeviction" in text


@pytest.mark.parametrize("policy", ["allkeys-lru", "allkeys-random"])
def test_an_allkeys_policy_warns_even_without_a_limit(
    httpserver: t.Any, redis_with: t.Callable[[list[str]], str], policy: str
) -> None:
    """allkeys-* may evict grants and the signing key as soon as a limit is set
    (managed services set one for you): redis_evicts, whatever maxmemory says."""
    url = redis_with(["--maxmemory", "0", "--maxmemory-policy", policy])
    text, report = _store_findings(httpserver, url)
    assert report.codes(check.WARN) == ["redis_evicts"]
    assert policy in text


def test_a_nearly_full_redis_warns(
    httpserver: t.Any, redis_with: t.Callable[[list[str]], str]
) -> None:
    url = redis_with(FULL_MAXMEMORY_ARGS)
    fill_to_maxmemory(redis.Redis.from_url(url))
    _, report = _store_findings(httpserver, url)
    assert report.codes(check.WARN) == ["redis_memory_high"]


@pytest.mark.parametrize(
    ("provider", "extra", "warned"),
    [
        ("google", {}, True),
        ("google", {"ALLOWED_EMAIL_DOMAINS": "example.com"}, False),
        ("google", {"GOOGLE_HOSTED_DOMAIN": "example.com"}, False),
        ("github", {}, True),
        ("github", {"GITHUB_ALLOWED_ORGS": "acme"}, False),
        ("github", {"ALLOWED_EMAILS": "ada@example.com"}, False),
    ],
)
def test_an_open_google_or_github_login_warns(
    provider: str, extra: dict[str, str], warned: bool
) -> None:
    """Google or GitHub with no allow-list lets any account in: open_login."""
    environ = {
        "PUBLIC_URL": PUBLIC,
        "OAUTH_PROVIDER": provider,
        "OAUTH_CLIENT_ID": "proxy-client",
        "OAUTH_CLIENT_SECRET": "proxy-secret",
        **extra,
    }
    settings = check.Settings.from_env(environ)
    report = check.Report()
    check._check_setup(settings, check.build_provider(settings), report)
    assert ("open_login" in report.codes(check.WARN)) is warned


@pytest.mark.parametrize(
    ("extra", "warned"),
    [
        ({}, True),
        ({"OAUTH_AUDIENCE": "https://tools.example.com/mcp"}, False),
        ({"MCP_BACKEND_URL": "http://127.0.0.1:9/mcp"}, False),
    ],
)
def test_own_mcp_url_without_the_gateway_warns(
    httpserver: t.Any, extra: dict[str, str], warned: bool
) -> None:
    """The printed MCP URL is this proxy's /mcp but nothing serves it there."""
    idp = OIDCStandIn(httpserver)
    status, text, report = run(env_for(idp.issuer, **extra))
    assert status == 0, text
    assert ("mcp_url_not_served" in report.codes(check.WARN)) is warned


def test_every_configuration_error_at_once() -> None:
    """Three bad variables: three [config] lines in one run, exit 2."""
    out = io.StringIO()
    status = check.main(
        {
            "PUBLIC_URL": "not a url",
            "OAUTH_ISSUER": "https://idp.example.com",
            "OAUTH_CLIENT_SECRET": "proxy-secret",
            "ACCESS_TOKEN_TTL_SECONDS": "-5",
            "METRICS_TOKEN": "short",
        },
        out,
    )
    assert status == 2
    lines = [line for line in out.getvalue().splitlines() if "[config]" in line]
    named = " ".join(lines)
    for variable in ("PUBLIC_URL", "OAUTH_CLIENT_ID", "METRICS_TOKEN"):
        assert variable in named, lines
    assert len(lines) >= 4, lines
