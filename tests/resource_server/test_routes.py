"""proxy/resource_server/routes.py: one route per server, chosen by path."""

from __future__ import annotations

import typing as t

import pytest

from proxy.config.mcp_servers import McpServer
from proxy.observability.events import Events
from proxy.resource_server.routes import build_routes
from proxy.resource_server.routes import route_for_forwarded_uri
from proxy.resource_server.routes import route_for_path

if t.TYPE_CHECKING:
    from proxy.config.settings import Settings


def _server(path: str, backend: str | None = "http://10.0.0.1/mcp") -> McpServer:
    return McpServer(
        path=path, audience="https://p.example" + path, scopes=(), backend_url=backend
    )


@pytest.fixture
def routes(settings: Settings) -> t.Any:
    servers = (_server("/crm/mcp"), _server("/crm/mcp/v2"), _server("/docs", None))
    return build_routes(settings.replace(mcp_servers=servers), Events())


def test_each_route_has_its_own_pool(routes: t.Any) -> None:
    crm, v2, docs = routes
    assert crm.backend is not None
    assert v2.backend is not None
    assert crm.backend is not v2.backend
    assert docs.backend is None  # no backend, no pool


@pytest.mark.parametrize(
    ("backend", "client_query", "host", "sent"),
    [
        ("http://10.0.0.1:8001/mcp", "", "10.0.0.1", "/mcp"),
        (
            "https://mcp.example/api/mcp?tenant=a",
            "",
            "mcp.example",
            "/api/mcp?tenant=a",
        ),
        ("http://10.0.0.1/mcp", "x=1", "10.0.0.1", "/mcp?x=1"),
        (
            "http://10.0.0.1/mcp?tenant=a",
            "x=1&y=2",
            "10.0.0.1",
            "/mcp?tenant=a&x=1&y=2",
        ),
        ("http://10.0.0.1", "", "10.0.0.1", "/"),
    ],
)
def test_a_backend_is_asked_for_its_path_and_query_on_its_own_pool(
    settings: Settings, backend: str, client_query: str, host: str, sent: str
) -> None:
    from flask import Flask

    from proxy.endpoints.gateway import _backend_target

    (route,) = build_routes(
        settings.replace(mcp_servers=(_server("/mcp", backend),)), Events()
    )
    assert route.backend is not None
    assert route.backend.host == host
    assert route.backend.scheme == backend.split(":")[0]
    with Flask(__name__).test_request_context("/mcp", query_string=client_query):
        assert _backend_target(route) == sent


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/crm/mcp", "/crm/mcp"),
        ("/crm/mcp/x", "/crm/mcp"),
        ("/crm/mcp/v2", "/crm/mcp/v2"),  # the longest path wins
        ("/crm/mcp/v2/y", "/crm/mcp/v2"),
        ("/crm/mcpx", None),
        ("/", None),
    ],
)
def test_the_route_for_a_path(routes: t.Any, path: str, expected: str | None) -> None:
    found = route_for_path(routes, path)
    assert (found.server.path if found else None) == expected


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (None, "/crm/mcp"),
        ("", "/crm/mcp"),
        ("/docs/a?b=c", "/docs"),
        ("http://[bad/docs", "/crm/mcp"),
        ("/nowhere", "/crm/mcp"),
    ],
)
def test_forward_auth_falls_back_to_the_first_route(
    routes: t.Any, uri: str | None, expected: str
) -> None:
    assert route_for_forwarded_uri(routes, uri).server.path == expected
