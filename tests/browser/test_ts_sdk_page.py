"""The MCP TypeScript SDK in a web page, calling a tool through the gateway.

The SDK (`@modelcontextprotocol/sdk` from npm) is bundled for the browser by
esbuild (both locked in `ts_page/`, installed by tests/node_packages.py);
`ts_page/page.mjs` is the page's script. The page is served from
http://localhost:<port>; the gateway is the proxy under gunicorn (2 workers)
at http://127.0.0.1:<port>, another origin, so every MCP request of the SDK
(Authorization, Content-Type: application/json, MCP-Protocol-Version,
Mcp-Session-Id) needs the CORS preflight of proxy/resource_server/mcp_cors.py
to pass. The access token is obtained beforehand by the scripted flow: the
OAuth part is proven elsewhere.
"""

from __future__ import annotations

import html
import json
import subprocess
import typing as t
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

from tests import node_packages
from tests.e2e.conftest import require_redis_server
from tests.e2e.gateway_stack import GatewayStack
from tests.e2e.gateway_stack import running_gateway
from tests.e2e.gateway_stack import scripted_tokens
from tests.e2e.gateway_stack import shared_services

from .conftest import serve
from .test_consent_page import ACTION_TIMEOUT_MS
from .test_consent_page import browser  # noqa: F401 - fixture
from .test_consent_page import pytestmark  # noqa: F401 - skip without Chromium
from .test_consent_page import record_requests

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIEnvironment
    from playwright.sync_api import Browser
    from playwright.sync_api import Page

TS_PAGE = Path(__file__).with_name("ts_page")
USER = "browser-ts@example.com"
TEXT = "hello from a browser page"
ESBUILD_TIMEOUT_SECONDS = 60
RESULT_TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def bundle() -> bytes:
    """page.mjs and the SDK as one browser ES module, built by esbuild."""
    target = node_packages.installed(TS_PAGE, name="ts-page", files=("page.mjs",))
    built = subprocess.run(  # noqa: S603 - a found binary, fixed arguments
        [
            node_packages.node(),
            str(target / "node_modules" / "esbuild" / "bin" / "esbuild"),
            "page.mjs",
            "--bundle",
            "--format=esm",
            "--platform=browser",
            "--target=chrome120",
            "--outfile=bundle.js",
        ],
        cwd=target,
        capture_output=True,
        text=True,
        timeout=ESBUILD_TIMEOUT_SECONDS,
        check=False,
    )
    if built.returncode != 0:
        pytest.fail(f"esbuild failed:\n{built.stderr}")
    return (target / "bundle.js").read_bytes()


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayStack]:
    require_redis_server()
    with (
        shared_services() as services,
        running_gateway(redis=services.redis, idp=services.idp, workers=2) as stack,
    ):
        yield stack


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:  # noqa: F811 - the imported fixture
    """A tab whose requests are not routed: Playwright answers CORS preflights
    itself once a route is set (the other browser tests' loopback-only route),
    and the gateway's own preflight answer is what this test is about. The
    page loads nothing but loopback URLs."""
    context = browser.new_context()
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


class PageSite:
    """The web page's own origin: `/` (the page) and `/bundle.js` (the SDK)."""

    def __init__(self, bundle: bytes, config: dict[str, str]) -> None:
        self.bundle = bundle
        self.config = config

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> t.Iterable[bytes]:
        path = Request(environ).path
        if path == "/bundle.js":
            response = Response(self.bundle, mimetype="text/javascript")
        elif path == "/":
            response = Response(self.page(), mimetype="text/html")
        else:
            response = Response("not found", status=404)
        return response(environ, start_response)

    def page(self) -> str:
        config = html.escape(json.dumps(self.config), quote=False)
        return (
            "<!doctype html><meta charset=utf-8><title>MCP in a page</title>"
            f"<script>window.MCP_TEST = {config};</script>"
            '<pre id="result"></pre><pre id="error"></pre>'
            '<script type="module" src="/bundle.js"></script>'
        )


def test_sdk_in_a_page_calls_a_tool_through_the_gateway_cross_origin(
    bundle: bytes,
    gateway: GatewayStack,
    page: Page,
) -> None:
    """CORS: the SDK, bundled for the browser and served from another origin,
    passes the MCP path's preflight and gets the tool's result into the page."""
    token = scripted_tokens(gateway.proxy_url, gateway.mcp_url, USER)["access_token"]
    site = PageSite(bundle, {"mcpUrl": gateway.mcp_url, "token": token, "text": TEXT})
    with serve(site) as port:
        page_url = f"http://localhost:{port}/"
        seen = record_requests(page)
        page.goto(page_url)
        page.wait_for_selector(
            "[data-done]", state="attached", timeout=RESULT_TIMEOUT_MS
        )
        error = page.locator("#error").text_content()
        assert not error, f"the page failed: {error}"
        result = json.loads(page.locator("#result").text_content() or "null")

    # Another origin than the gateway's: the browser had to preflight.
    assert result["origin"] == f"http://localhost:{port}"
    assert urlsplit(gateway.mcp_url).hostname == "127.0.0.1"
    assert any(url == gateway.mcp_url for url in seen)
    # Every request the page made stayed on the machine.
    assert all(urlsplit(url).hostname in ("localhost", "127.0.0.1") for url in seen)
    assert {"echo", "whoami", "count"} <= set(result["tools"])
    assert result["isError"] is False
    assert result["echo"] == TEXT
    assert result["protocolVersion"] == "2025-11-25"

    # The preflight the browser sent, as the gateway answers it.
    preflight = requests.options(
        gateway.mcp_url,
        headers={
            "Origin": result["origin"],
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": (
                "authorization,content-type,mcp-protocol-version,mcp-session-id"
            ),
        },
        timeout=10,
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == result["origin"]
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    for name in ("authorization", "content-type", "mcp-protocol-version"):
        assert name in allowed
    assert "Access-Control-Allow-Credentials" not in preflight.headers
