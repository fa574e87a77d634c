"""A second real client from another ecosystem: the MCP TypeScript SDK.

`ts_client/client.mjs` uses `@modelcontextprotocol/sdk` (StreamableHTTPClientTransport
with an OAuthClientProvider) to connect to the gateway from scratch. The SDK is
installed with `npm ci` from the committed package.json and package-lock.json into
a cache directory outside the repository (keyed by the lock file's hash), never
into the source tree (tests/node_packages.py).

Protocol revisions: SDK 1.32.2 (the latest on npm when this was written) knows
2025-11-25 as its latest and nothing newer, so the 2025-11-25 revision is the
one pinned here; the 2026-07-28 revision is proven with the Python SDK
(tests/e2e/test_gateway_transport.py). The test fails once a locked SDK knows
2026-07-28, so that the pin is added then.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import typing as t
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from proxy.oauth.identity_tokens import IDENTITY_TOKEN_TYPE
from tests import node_packages

from .conftest import require_redis_server
from .gateway_stack import GatewayStack
from .gateway_stack import running_gateway
from .gateway_stack import shared_services

TS_CLIENT = Path(__file__).with_name("ts_client")
USER = "ts-client@example.com"
NODE_TIMEOUT_SECONDS = 90


@pytest.fixture(scope="module")
def ts_client() -> Path:
    """A directory holding client.mjs next to an `npm ci`-installed SDK."""
    return node_packages.installed(TS_CLIENT, name="ts-client", files=("client.mjs",))


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayStack]:
    require_redis_server()
    with (
        shared_services() as services,
        running_gateway(
            redis=services.redis,
            idp=services.idp,
            workers=2,
            overrides={"MCP_BACKEND_IDENTITY": "both"},
        ) as stack,
    ):
        yield stack


@pytest.fixture(scope="module")
def report(ts_client: Path, gateway: GatewayStack) -> dict[str, t.Any]:
    """What client.mjs saw, run once against the module's gateway."""
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
    return t.cast(dict[str, t.Any], json.loads(result.stdout.strip().splitlines()[-1]))


def test_typescript_sdk_client_through_the_gateway(
    report: dict[str, t.Any], gateway: GatewayStack
) -> None:
    """PRM-7, PRM-8, DCR, ISS: the TS SDK discovers, registers, logs in (consent +
    IdP), redeems the code, lists tools, calls echo, and calls count with its
    progress streamed, through the gateway on two gunicorn workers."""
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

    # The revision negotiated is the SDK's latest; pinned, see the docstring.
    assert report["sdkLatest"] == "2025-11-25"
    assert report["protocolVersion"] == "2025-11-25"
    assert "2026-07-28" not in report["sdkSupported"]

    # Progress notifications arrive while the tool runs (3 steps, 300 ms apart),
    # not all at once with the result: the gateway streams, it never buffers.
    assert report["count"] == "counted to 3"
    steps = report["progress"]
    assert [(p["progress"], p["total"]) for p in steps] == [(1, 3), (2, 3), (3, 3)]
    assert report["countDoneMs"] - steps[0]["atMs"] >= 500
    assert steps[1]["atMs"] - steps[0]["atMs"] >= 200


def test_backend_verifies_the_signed_identity_from_the_jwks(
    report: dict[str, t.Any], gateway: GatewayStack
) -> None:
    """MCP_BACKEND_IDENTITY=both on two workers: the backend's X-MCP-Identity
    verifies against the proxy's served JWKS and names the TS client's user."""
    token = report["whoami"]["identity"]
    jwks = requests.get(f"{gateway.proxy_url}/.well-known/jwks.json", timeout=10)
    decoded = jwt.decode(
        token, KeySet.import_key_set(jwks.json()), algorithms=["ES256"]
    )
    assert decoded.header["typ"] == IDENTITY_TOKEN_TYPE
    JWTClaimsRegistry(
        iss={"essential": True, "value": gateway.proxy_url},
        aud={"essential": True, "value": gateway.backend_url},
        exp={"essential": True},
    ).validate(decoded.claims)
    assert decoded.claims["sub"] == report["whoami"]["user"] == USER
    assert decoded.claims["client_id"] == report["clientId"]
