"""The installed wheel serves, from a directory that is not the checkout.

`pip install .` (not editable) must be enough: the Procfile's gunicorn command
and `python -m proxy` find their settings, app, templates and catalog inside
the installed package. Each runs from an empty temporary directory with the
venv's interpreter and no PYTHONPATH, and the test first proves that `proxy`
then resolves to the venv's site-packages, not to a checkout.
"""

from __future__ import annotations

import secrets
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

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
