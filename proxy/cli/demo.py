"""`python -m proxy`: run the proxy (and, with nothing configured, a demo IdP).

With no OAUTH_ISSUER set, a local demo identity provider (oidc-provider-mock)
is started on loopback and the proxy is pointed at it, so the first command in
the README works on a fresh machine. The proxy itself runs under gunicorn
with the package's own settings (proxy/config/gunicorn_conf.py) and app
(proxy.web.wsgi), as the Procfile runs it: nothing is read from a checkout,
so an installed package runs from any directory.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import socket
import subprocess
import sys
import time
import typing as t
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import find_dotenv
from dotenv import load_dotenv

from proxy.oauth.redirect_uris import is_loopback_host

#: The gunicorn settings file inside this package (given to gunicorn by path:
#: see its docstring for why gunicorn must not import it).
GUNICORN_SETTINGS = Path(__file__).resolve().parents[1] / "config" / "gunicorn_conf.py"
#: The app gunicorn serves (proxy/web/wsgi.py).
WSGI_APP = "proxy.web.wsgi:app"


DEMO_CLIENT_ID = "mcp-oauth-proxy-demo"


DEMO_USER = "alice@example.com"


#: Operator tools: ``python -m proxy <name> ...`` runs ``<module>.main(argv,
#: environ, out)`` against the shared store (REDIS_URL).
TOOLS = {
    "trace": "proxy.cli.trace",
    "admin": "proxy.cli.admin",
    "keys": "proxy.cli.keys",
}
TOOL_USAGE = {
    "trace": "--client ID | --user SUB | --last N | --id TRACE prints flow traces",
    "admin": "clients ... | grants ... | stats manages clients and grants",
    "keys": "list | rotate [--overlap S] | retire KID manages the signing keys",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in TOOLS:
        tool = importlib.import_module(TOOLS[argv[0]])
        load_dotenv(find_dotenv(usecwd=True))
        return int(tool.main(argv[1:], os.environ, sys.stdout))
    parser = argparse.ArgumentParser(prog="python -m proxy")
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "check"],
        help="serve (default) runs the proxy; check verifies the IdP set-up; "
        + "; ".join(f"{name} {usage}" for name, usage in TOOL_USAGE.items()),
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    # The working directory's .env, installed or not (not one beside this file).
    load_dotenv(find_dotenv(usecwd=True))
    if args.command == "check":
        from proxy.cli.check import main as check

        return check(os.environ, sys.stdout)
    return serve_forever(args.port, args.workers)


def say(*parts: object) -> None:
    """Print at once: the URLs matter to whoever reads a pipe or a log."""
    print(*parts, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout: float = 20.0, *, any_status: bool = False) -> None:
    """Poll until `url` answers (with any HTTP status, if `any_status`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback
                return
        except urllib.error.HTTPError:
            if any_status:
                return
            time.sleep(0.1)
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"error: {url} did not answer within {timeout:.0f} s")


def serve_forever(port: int, workers: int | None) -> int:
    """Start the demo services (if needed) and the proxy; stop them all on exit."""
    # Started from a script in the background, Python inherits SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    children: list[subprocess.Popen[bytes]] = []
    try:
        code = _start(port, workers, children)
    except BaseException:
        _stop(children)
        raise
    if code:
        _stop(children)
        return code
    return _wait(children)


def _start(
    port: int, workers: int | None, children: list[subprocess.Popen[bytes]]
) -> int:
    env = dict(os.environ)
    env.setdefault("PUBLIC_URL", f"http://127.0.0.1:{port}")
    # One readable line per flow step on this console (from the events); the
    # JSON audit trail would only repeat them here.
    env.setdefault("FLOW_LOG", "true")
    env.setdefault("AUDIT_LOG", "false")
    if not env.get("OAUTH_ISSUER") and (env.get("OAUTH_PROVIDER") or "oidc") == "oidc":
        host = urlsplit(env["PUBLIC_URL"]).hostname or ""
        if not is_loopback_host(host):
            sys.stderr.write(
                "error: OAUTH_ISSUER is not set, and the demo identity provider runs "
                f"only for a loopback PUBLIC_URL (got {env['PUBLIC_URL']}). Set "
                "OAUTH_ISSUER, OAUTH_CLIENT_ID and OAUTH_CLIENT_SECRET for your IdP.\n"
            )
            return 2
        env.update(_start_demo_idp(children))
        if not env.get("MCP_BACKEND_URL"):
            env["MCP_BACKEND_URL"] = _start_demo_backend(children)
    if workers is None:
        workers = 1 if not env.get("REDIS_URL") else None
    children.append(subprocess.Popen(_gunicorn_command(env, port, workers), env=env))  # noqa: S603
    wait_for(f"http://127.0.0.1:{port}/healthz")
    _announce(env)
    return 0


def _start_demo_idp(children: list[subprocess.Popen[bytes]]) -> dict[str, str]:
    """oidc-provider-mock on a free port; the settings that point the proxy at it."""
    idp_port = free_port()
    children.append(
        subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "oidc_provider_mock", "-p", str(idp_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    issuer = f"http://127.0.0.1:{idp_port}"
    wait_for(issuer + "/.well-known/openid-configuration")
    say(f"demo identity provider: {issuer} (log in as any name, e.g. {DEMO_USER})")
    return {
        "OAUTH_ISSUER": issuer,
        "OAUTH_CLIENT_ID": DEMO_CLIENT_ID,
        "OAUTH_CLIENT_SECRET": "demo-secret",  # noqa: S106 - the demo IdP takes any
    }


def _start_demo_backend(children: list[subprocess.Popen[bytes]]) -> str:
    """The demo MCP server on a free port; its /mcp URL once it answers."""
    backend_port = free_port()
    argv = [sys.executable, "-m", "proxy.cli.demo_mcp_server"]
    children.append(
        subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [*argv, "--port", str(backend_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    url = f"http://127.0.0.1:{backend_port}/mcp"
    # The MCP URL is printed only once the server behind it answers.
    wait_for(url, any_status=True)
    say(f"demo MCP server:        {url} (behind the gateway)")
    return url


def _gunicorn_command(env: dict[str, str], port: int, workers: int | None) -> list[str]:
    """The Procfile's command, bound to loopback (or HOST) and `port`."""
    host = env.get("HOST") or "127.0.0.1"
    command = [sys.executable, "-m", "gunicorn"]
    command += ["-c", str(GUNICORN_SETTINGS), "--bind", f"{host}:{port}"]
    if workers:
        command += ["--workers", str(workers)]
    return [*command, WSGI_APP]


def _announce(env: dict[str, str]) -> None:
    say(f"proxy issuer: {env['PUBLIC_URL']}")
    if env.get("MCP_BACKEND_URL"):
        mcp_url = env["PUBLIC_URL"] + env.get("MCP_PATH", "/mcp")
        say(f"MCP URL:      {mcp_url}")
        say(f"  try: npx @modelcontextprotocol/inspector  (Streamable HTTP, {mcp_url})")
        say(f"   or: npx mcp-remote {mcp_url}")
    say(f"discovery:    {env['PUBLIC_URL']}/.well-known/oauth-authorization-server")
    say("press Ctrl-C to stop")


def _wait(children: list[subprocess.Popen[bytes]]) -> int:
    code = 0
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.2)
        code = next((c.returncode for c in children if c.returncode), 0) or 0
    except KeyboardInterrupt:
        pass
    finally:
        _stop(children)
    return code


def _interrupt(*_: t.Any) -> None:
    raise KeyboardInterrupt


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in reversed(children):
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
