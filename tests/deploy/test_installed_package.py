"""The installed wheel serves, from a directory that is not the checkout.

`pip install .` (not editable) must be enough: the Procfile's gunicorn command
and `python -m proxy` find their settings, app, templates and catalog inside
the installed package. Each runs from an empty temporary directory with the
venv's interpreter and no PYTHONPATH, and the test first proves that `proxy`
then resolves to the venv's site-packages, not to a checkout.
"""

from __future__ import annotations

import json
import secrets
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from packaging.utils import canonicalize_name

from support.processes import ManagedProcess
from support.processes import free_port
from support.processes import start_http
from tests.deploy.conftest import ROOT
from tests.deploy.conftest import outside_env

START_TIMEOUT_SECONDS = 60.0


def procfile_web() -> list[str]:
    """The Procfile's web command, as argv."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return shlex.split(line.removeprefix("web:"))
    raise AssertionError("Procfile has no web: line")


def imported_files(python: Path, env: dict[str, str], cwd: Path) -> list[str]:
    """Where ``python`` imports the package and the gunicorn loader from."""
    code = (
        "import importlib.util as u; "
        "print(u.find_spec('proxy').origin); "
        "print(u.find_spec('mcp_oauth_proxy_gunicorn').origin)"
    )
    done = subprocess.run(
        [str(python), "-c", code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.split()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """An empty working directory outside the repository."""
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    assert not workdir.resolve().is_relative_to(ROOT)
    return workdir


@pytest.fixture
def running() -> Iterator[list[ManagedProcess]]:
    """Processes a test started, stopped with their whole group afterwards."""
    started: list[ManagedProcess] = []
    yield started
    for proc in started:
        proc.close()


def test_the_wheel_is_what_runs_outside_the_checkout(venv: Path, outside: Path) -> None:
    site_packages = next((venv / "lib").glob("python3*/site-packages"))
    package, loader = imported_files(venv / "bin" / "python", outside_env(), outside)
    assert Path(package) == site_packages / "proxy" / "__init__.py"
    assert Path(loader) == site_packages / "mcp_oauth_proxy_gunicorn.py"


#: Run in the venv: what an arbiter and a worker import (the gunicorn settings,
#: which load the gevent worker class, then the app), mapped to distributions.
IMPORTS_AUDIT = r"""
import json, os, sys
before = set(sys.modules)
import mcp_oauth_proxy_gunicorn  # the arbiter: settings, worker class, logger
from proxy import create_app
create_app()  # the worker: the app and everything it imports
import importlib.metadata as md
owners = md.packages_distributions()
ours = os.path.realpath(os.path.dirname(sys.modules["proxy"].__file__))
found = {}
for name in set(sys.modules) - before:
    path = os.path.realpath(getattr(sys.modules[name], "__file__", None) or "")
    top = name.partition(".")[0]
    # Installed code only (not the standard library, not modules without a
    # file), and not ours: the package, the loader, and what it loads by path.
    if "-packages" + os.sep not in path:
        continue
    if top in ("proxy", "mcp_oauth_proxy_gunicorn") or path.startswith(ours + os.sep):
        continue
    found[top] = owners.get(top, [])
print(json.dumps(found))
"""

#: Imported when present, behind `except ImportError` (so absent on a clean
#: install, and harmless): redis-py's OpenTelemetry hooks, fakeredis' vector sets.
OPTIONAL_IMPORTS = {"opentelemetry", "numpy", "jsonpath_ng"}

#: Run in the venv: the distributions the installed wheel needs, transitively.
DECLARED_CLOSURE = r"""
import importlib.metadata as md, json
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
todo, seen = [("mcp-oauth-proxy", frozenset())], {}
while todo:
    name, extras = todo.pop()
    key = canonicalize_name(name)
    if extras <= seen.get(key, frozenset()) and key in seen:
        continue
    seen[key] = seen.get(key, frozenset()) | extras
    for line in md.requires(name) or []:
        req = Requirement(line)
        wanted = [{"extra": e} for e in extras] or [{"extra": ""}]
        if req.marker is None or any(req.marker.evaluate(w) for w in wanted):
            todo.append((req.name, frozenset(req.extras)))
print(json.dumps(sorted(seen)))
"""


def run_in(python: Path, code: str, env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [str(python), "-c", code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_everything_the_proxy_imports_is_a_declared_dependency(
    venv: Path, outside: Path
) -> None:
    """A clean `pip install` brings only what the wheel declares, transitively;
    the venv here sees this machine's packages too, so an undeclared import
    (gunicorn's gevent worker needs `packaging`, declared only under
    gunicorn[gevent]) would pass every other test here and fail on a PaaS."""
    env = outside_env(
        PUBLIC_URL="http://127.0.0.1:9",
        OAUTH_ISSUER="http://127.0.0.1:9",
        OAUTH_CLIENT_ID="proxy-client",
        OAUTH_CLIENT_SECRET="proxy-secret",
        LOG_LEVEL="error",
    )
    python = venv / "bin" / "python"
    owners = json.loads(run_in(python, IMPORTS_AUDIT, env, outside))
    declared = set(json.loads(run_in(python, DECLARED_CLOSURE, env, outside)))
    assert {"flask", "gevent", "redis"} <= set(owners)  # the audit sees imports
    undeclared = {
        module: distributions
        for module, distributions in owners.items()
        if module not in OPTIONAL_IMPORTS
        and not declared & {canonicalize_name(d) for d in distributions}
    }
    assert undeclared == {}


def test_procfile_command_serves_from_the_installed_package(
    venv: Path,
    outside: Path,
    redis_url: str,
    idp_url: str,
    running: list[ManagedProcess],
) -> None:
    """The Procfile's command, with `gunicorn` run by the venv's interpreter,
    two workers on a real Redis and a real upstream IdP: live, ready (Redis and
    the IdP's discovery both good) and serving metadata."""
    command = procfile_web()
    assert command[0] == "gunicorn"
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    env = outside_env(
        PORT=str(port),
        HOST="127.0.0.1",
        WEB_CONCURRENCY="2",
        PUBLIC_URL=public_url,
        OAUTH_ISSUER=idp_url,
        OAUTH_CLIENT_ID="proxy-client",
        OAUTH_CLIENT_SECRET="proxy-secret",
        PROXY_SECRET_KEY=secrets.token_hex(32),
        REDIS_URL=redis_url,
        REDIS_KEY_PREFIX=f"deploy-{secrets.token_hex(4)}:",
    )
    argv = [str(venv / "bin" / "python"), "-m", "gunicorn", *command[1:]]
    proxy = start_http(
        "installed-proxy",
        argv,
        port=port,
        ready_path="/readyz",
        env=env,
        cwd=outside,
        timeout=START_TIMEOUT_SECONDS,
    )
    running.append(proxy)

    assert requests.get(f"{public_url}/healthz", timeout=5).status_code == 200
    ready = requests.get(f"{public_url}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    metadata = requests.get(
        f"{public_url}/.well-known/oauth-authorization-server", timeout=5
    )
    assert metadata.status_code == 200
    assert metadata.json()["issuer"] == public_url
    # Two workers: the gevent worker class loaded by path, no import refused.
    assert "Booting worker" in proxy.output()
    assert "Traceback" not in proxy.output()


def test_python_m_proxy_runs_the_demo_from_the_installed_package(
    venv: Path, outside: Path, running: list[ManagedProcess]
) -> None:
    """`python -m proxy` with nothing configured: demo IdP, demo MCP server and
    the proxy under gunicorn, all from site-packages."""
    port = free_port()
    demo = start_http(
        "installed-demo",
        [str(venv / "bin" / "python"), "-m", "proxy", "--port", str(port)],
        port=port,
        ready_path="/.well-known/oauth-authorization-server",
        env=outside_env(),
        cwd=outside,
        timeout=START_TIMEOUT_SECONDS,
    )
    running.append(demo)
    base = f"http://127.0.0.1:{port}"
    metadata = requests.get(f"{base}/.well-known/oauth-authorization-server", timeout=5)
    assert metadata.json()["issuer"] == base
    # The gateway serves the demo MCP server: no token, the OAuth challenge.
    challenge = requests.post(f"{base}/mcp", json={}, timeout=5)
    assert challenge.status_code == 401
    assert "resource_metadata=" in challenge.headers["WWW-Authenticate"]
