"""A second real client from another ecosystem: the MCP TypeScript SDK.

`ts_client/client.mjs` uses `@modelcontextprotocol/sdk` (StreamableHTTPClientTransport
with an OAuthClientProvider) to connect to the gateway from scratch. The SDK is
installed with `npm ci` from the committed package.json and package-lock.json into
a cache directory outside the repository (keyed by the lock file's hash), never
into the source tree.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import require_redis_server
from .gateway_stack import GatewayStack
from .gateway_stack import running_gateway
from .gateway_stack import shared_services

TS_CLIENT = Path(__file__).with_name("ts_client")
USER = "ts-client@example.com"
NPM_TIMEOUT_SECONDS = 300
NODE_TIMEOUT_SECONDS = 90


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if path is not None:
        return path
    reason = f"{binary} is not installed (Node.js 18+ with npm runs the TS SDK client)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; it is required when CI is set", pytrace=False)
    pytest.skip(reason)


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mcp-oauth-proxy"


@pytest.fixture(scope="module")
def ts_client() -> Path:
    """A directory holding client.mjs next to an `npm ci`-installed SDK."""
    node = _require("node")
    npm = _require("npm")
    version = subprocess.run(  # noqa: S603 - a found binary, fixed arguments
        [node, "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 18:
        pytest.skip(f"node {version} is too old (need 18+ for fetch)")
    lock = (TS_CLIENT / "package-lock.json").read_bytes()
    manifest = (TS_CLIENT / "package.json").read_bytes()
    digest = hashlib.sha256(manifest + lock).hexdigest()[:16]
    target = _cache_root() / f"ts-client-{digest}"
    marker = target / ".installed"
    if not marker.exists():
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(TS_CLIENT / "package.json", target / "package.json")
        shutil.copy(TS_CLIENT / "package-lock.json", target / "package-lock.json")
        result = subprocess.run(  # noqa: S603 - a found binary, fixed arguments
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=target,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_SECONDS,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"npm ci failed:\n{result.stdout}\n{result.stderr}")
        marker.write_text("ok\n")
    # ESM resolves imports next to the script, so the script goes next to node_modules.
    shutil.copy(TS_CLIENT / "client.mjs", target / "client.mjs")
    return target


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayStack]:
    require_redis_server()
    with (
        shared_services() as services,
        running_gateway(redis=services.redis, idp=services.idp, workers=2) as stack,
    ):
        yield stack


def test_typescript_sdk_client_through_the_gateway(
    ts_client: Path, gateway: GatewayStack
) -> None:
    """PRM-7, PRM-8, DCR, ISS: the TS SDK discovers, registers, logs in (consent +
    IdP), redeems the code, lists tools and calls echo through the gateway."""
    try:
        result = subprocess.run(  # noqa: S603 - our script, fixed arguments
            [
                shutil.which("node") or "node",
                str(ts_client / "client.mjs"),
                gateway.mcp_url,
                USER,
                "hello from TypeScript",
            ],
            cwd=ts_client,
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        gateway.dump_logs()
        pytest.fail(f"the TS client did not finish: {exc}")
    if result.returncode != 0:
        gateway.dump_logs()
        pytest.fail(f"the TS client failed ({result.returncode}):\n{result.stderr}")
    report = json.loads(result.stdout.strip().splitlines()[-1])

    # From scratch: the first connect hit the gateway's 401 and started OAuth.
    assert report["firstAttempt"] == "unauthorized"
    assert report["clientId"]
    assert len(report["authorizeUrls"]) == 1
    assert report["authorizeUrls"][0].startswith(
        f"{gateway.proxy_url}/oauth2/authorize?"
    )
    assert report["consented"] is True
    assert report["iss"] == gateway.proxy_url
    assert any(f"{gateway.proxy_url}/oauth2/callback?" in hop for hop in report["hops"])
    assert report["tokenType"].lower() == "bearer"
    assert report["hasRefreshToken"] is True

    # Tools through the gateway; the backend saw the user, never the token.
    assert {"echo", "whoami", "count"} <= set(report["tools"])
    assert report["echoIsError"] is False
    assert report["echo"] == "hello from TypeScript"
    assert report["whoami"]["user"] == USER
    assert report["whoami"]["authorization"] is None
