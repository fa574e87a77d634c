"""The benchmark's processes: redis-server, the upstream IdP, the MCP backend,
the proxy and the floor (the peer is started by its own phase, bench/peer.py),
and, in this process, the https server of the CIMD clients' documents.

Each runs in its own process group (support/processes.py), so its CPU can be
attributed; every child's log is kept in the results directory.
"""

from __future__ import annotations

import json
import secrets
import sys
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from proxy.config.settings import Settings
from support.processes import REPO_ROOT
from support.processes import ManagedProcess
from support.processes import free_port
from support.processes import start_demo_backend
from support.processes import start_gunicorn
from support.processes import start_http
from support.processes import start_proxy
from support.processes import start_redis

from .documents import DocumentHost
from .documents import serve_documents
from .load import DCR
from .load import FlowClient
from .load import Target
from .options import Options

UPSTREAMS = {"fast": "bench.fast_idp:app", "mock": "bench.idp_app:app"}
#: How long a child may take to answer (two busy cores start gunicorn slowly).
START_TIMEOUT = 30.0


@dataclass
class Stack:
    redis: ManagedProcess
    idp: ManagedProcess
    backend: ManagedProcess
    proxy: ManagedProcess
    #: The same proxy with audit, traces and metrics off: their cost is the gap.
    quiet: ManagedProcess
    floor: ManagedProcess
    #: The same proxy with a tool policy, tool scopes and the signed backend
    #: identity (MCP_BACKEND_IDENTITY=jwt): the gateway's cost with all of it on.
    guarded: ManagedProcess
    #: The same proxy with the tool policy and tool scopes only (identity in
    #: headers): issue 13's "with policy on".
    policed: ManagedProcess
    settings: Settings
    env: dict[str, str]
    log_dir: Path
    documents: DocumentHost
    others: list[ManagedProcess] = field(default_factory=list)

    def all(self) -> list[ManagedProcess]:
        return [
            self.redis,
            self.idp,
            self.backend,
            self.proxy,
            self.quiet,
            self.floor,
            self.guarded,
            self.policed,
            *self.others,
        ]

    def stop(self) -> None:
        for proc in reversed(self.all()):
            proc.stop()
        self.documents.close()

    def proxy_target(self, client: FlowClient = DCR) -> Target:
        """Complete flows against the proxy, with its gateway as the MCP URL."""
        return Target(
            kind="proxy",
            base=self.proxy.url,
            resource=self.settings.resource,
            scope="mcp",
            mcp_url=self.proxy.url + self.settings.mcp_path,
            client=client,
        )

    def flow_clients(self) -> dict[str, FlowClient]:
        """Every kind of client a flow can run as, DCR first."""
        return {DCR.kind: DCR, **self.documents.clients()}


def start_stack(options: Options, log_dir: Path) -> Stack:
    started: list[ManagedProcess] = []
    documents = serve_documents(log_dir)
    try:
        started.append(start_redis(log_dir=log_dir, timeout=START_TIMEOUT))
        idp_app = UPSTREAMS[options.upstream]
        started.append(start_idp(log_dir, options.idp_threads, idp_app))
        started.append(
            start_demo_backend(
                name="mcp-backend", log_dir=log_dir, timeout=START_TIMEOUT
            )
        )
        redis, idp, backend = started
        proxy_port = free_port()
        env = _proxy_env(proxy_port, idp.url, redis.url, backend.url)
        # The CIMD documents: trust their test CA, allow their loopback host.
        env["SSL_CERT_FILE"] = str(documents.ca_file)
        env["CIMD_ALLOWED_PRIVATE_HOSTS"] = "127.0.0.1"
        settings = Settings.from_env(env)
        started.append(
            start_proxy(
                env,
                port=proxy_port,
                workers=options.workers,
                log_dir=log_dir,
                timeout=START_TIMEOUT,
            )
        )
        started.append(start_quiet(env, options.workers, log_dir))
        started.append(
            start_floor(redis.url, idp.url, options.workers, log_dir, backend.url)
        )
        started.append(start_guarded(env, options.workers, log_dir))
        started.append(start_guarded(env, options.workers, log_dir, identity_jwt=False))
    except BaseException:
        for proc in reversed(started):
            proc.stop()
        documents.close()
        raise
    proxy, quiet, floor, guarded, policed = started[3:]
    return Stack(
        redis,
        idp,
        backend,
        proxy,
        quiet,
        floor,
        guarded,
        policed,
        settings=settings,
        env=env,
        log_dir=log_dir,
        documents=documents,
    )


def _proxy_env(port: int, idp_url: str, redis_url: str, mcp_url: str) -> dict[str, str]:
    """The proxy in gateway mode in front of the MCP backend."""
    return {
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "OAUTH_ISSUER": idp_url,
        "OAUTH_CLIENT_ID": "proxy-client",
        "OAUTH_CLIENT_SECRET": "proxy-secret",
        "REDIS_URL": redis_url,
        "PROXY_SECRET_KEY": secrets.token_hex(32),
        "MCP_BACKEND_URL": mcp_url,
        "MCP_SCOPES": "mcp",
        "LOG_LEVEL": "warning",
        # Observability as a production deployment runs it: the audit trail
        # and flow traces are on by default; metrics count once a token is set.
        "METRICS_TOKEN": secrets.token_hex(16),
        # Limits stay on (their round trips are part of the cost measured)
        # but far above what one load generator on one IP sends.
        **{f"RATE_LIMIT_{name}": "1000000/second" for name in _LIMITED},
        "REGISTRATIONS_PER_IP_PER_DAY": "10000000",
    }


_LIMITED = (
    "REGISTER AUTHORIZE CONSENT CALLBACK TOKEN REVOKE INTROSPECT PER_CLIENT PER_GRANT"
).split()


#: What `quiet` turns off: the cost of issue #10's audit trail, flow traces
#: and metrics is the proxy's throughput and CPU against this one's.
OBSERVABILITY_OFF = {"AUDIT_LOG": "0", "TRACE_TTL_SECONDS": "0", "METRICS_TOKEN": ""}


def start_quiet(
    proxy_env: dict[str, str], workers: int, log_dir: Path
) -> ManagedProcess:
    """The proxy again, same settings, same Redis, same keys, observability off.

    PUBLIC_URL stays the proxy's: tokens either one issues carry one issuer,
    so the loops' fixtures and tokens serve both.
    """
    env = {**proxy_env, **OBSERVABILITY_OFF}
    return _start_twin("proxy-quiet", env, free_port(), workers, log_dir)[0]


def start_issuer(
    proxy_env: dict[str, str], workers: int, log_dir: Path, *, quiet: bool
) -> tuple[ManagedProcess, Settings]:
    """A new proxy under its own PUBLIC_URL, with observability off when
    ``quiet``, for complete flows: a flow follows redirects to PUBLIC_URL (the
    IdP's to the callback), so one begun at another server sharing the
    proxy's would finish at the proxy. Both sides of a comparison are started
    alike, so neither carries the other phases' history."""
    port = free_port()
    env = {**proxy_env, "PUBLIC_URL": f"http://127.0.0.1:{port}"}
    if quiet:
        env.update(OBSERVABILITY_OFF)
    name = "proxy-quiet-issuer" if quiet else "proxy-issuer"
    return _start_twin(name, env, port, workers, log_dir)


def _start_twin(
    name: str, env: dict[str, str], port: int, workers: int, log_dir: Path
) -> tuple[ManagedProcess, Settings]:
    """The proxy of ``env`` under gunicorn, and its settings."""
    proc = start_gunicorn(
        name,
        "wsgi:app",
        env,
        port=port,
        workers=workers,
        ready_path="/readyz",
        log_dir=log_dir,
        timeout=START_TIMEOUT,
    )
    return proc, Settings.from_env(env)


#: MCP_TOOL_SCOPES for `guarded` and `policed`: echo and count need the flows'
#: scope `mcp`.
GUARDED_TOOL_SCOPES = {
    "tools": {"echo": "mcp", "count": "mcp", "delete_*": "mcp:admin"},
    "implies": {"mcp:admin": ["mcp"]},
}
#: MCP_TOOL_POLICY for `guarded` and `policed`: echo is reached after every
#: rule is tried.
GUARDED_POLICY = {
    "default": "allow",
    "rules": [
        {"effect": "deny", "tools": ["delete_*"], "catalogued": False},
        {"effect": "allow", "tools": ["delete_*"], "groups": ["admins"]},
        {"effect": "deny", "tools": ["delete_*"]},
        {"effect": "deny", "tools": ["whoami"], "email_domains": ["evil.example"]},
        {"effect": "deny", "tools": ["count"], "users": ["mallory@example.com"]},
    ],
}


def start_guarded(
    proxy_env: dict[str, str],
    workers: int,
    log_dir: Path,
    *,
    identity_jwt: bool = True,
) -> ManagedProcess:
    """The proxy again (same settings, Redis, keys and PUBLIC_URL, so the same
    tokens serve it), with a tool policy file and a tool scopes file, and with
    the identity JWT for the backend when ``identity_jwt``: the gateway as a
    guarded deployment runs it."""
    log_dir.mkdir(parents=True, exist_ok=True)
    policy = log_dir / "guarded-policy.json"
    policy.write_text(json.dumps(GUARDED_POLICY))
    scopes = log_dir / "guarded-tool-scopes.json"
    scopes.write_text(json.dumps(GUARDED_TOOL_SCOPES))
    env = {
        **proxy_env,
        "MCP_TOOL_POLICY": str(policy),
        "MCP_TOOL_SCOPES": str(scopes),
        "MCP_BACKEND_IDENTITY": "jwt" if identity_jwt else "headers",
    }
    name = "proxy-guarded" if identity_jwt else "proxy-policed"
    return _start_twin(name, env, free_port(), workers, log_dir)[0]


def start_idp(log_dir: Path, threads: int, app: str) -> ManagedProcess:
    """The upstream IdP under gunicorn: ONE worker (the mock's state is in-process)."""
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "--worker-class", "gthread"]
    argv += ["--workers", "1", "--threads", str(threads)]
    argv += ["--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
    argv += [app]
    return start_http(
        "idp",
        argv,
        port=port,
        ready_path="/.well-known/openid-configuration",
        cwd=REPO_ROOT,
        log_dir=log_dir,
        timeout=START_TIMEOUT,
    )


def start_floor(
    redis_url: str, idp_url: str, workers: int, log_dir: Path, mcp_url: str
) -> ManagedProcess:
    """bench/floor_app.py under the proxy's gunicorn command and settings,
    its `/mcp` relaying to the MCP backend at ``mcp_url``."""
    port = free_port()
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    env = {
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "REDIS_URL": redis_url,
        "FLOOR_SIGNING_KEY": pem,
        "FLOOR_UPSTREAM_AUTHORIZE": idp_url + "/oauth2/authorize",
        "FLOOR_MCP_BACKEND": mcp_url,
        "LOG_LEVEL": "warning",
    }
    return start_gunicorn(
        "floor",
        "bench.floor_app:app",
        env,
        port=port,
        workers=workers,
        ready_path="/.well-known/jwks.json",
        log_dir=log_dir,
        timeout=START_TIMEOUT,
    )
