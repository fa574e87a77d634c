"""The MCP SDK client with a `client_metadata_url` under each registration switch.

CIMD_ENABLED=false: the metadata must not advertise CIMD, so the SDK falls
back to DCR and still completes. OAUTH_USE_DYNAMIC_REGISTRATION=false with
CIMD on: no registration endpoint, and the SDK's URL client id carries it.
Real processes as in test_cimd_client_flow.py.
"""

from __future__ import annotations

import functools

import anyio
import requests

from tests.document_server import DocumentServer

from .conftest import StackFactory
from .mcp_oauth_client import DEFAULT_REDIRECT_URI
from .mcp_oauth_client import FlowReport
from .mcp_oauth_client import connect_and_call

USER = "erin-switches@example.com"
PATH = "/oauth/switches-client.json"


def _serve(document_server: DocumentServer) -> str:
    document = document_server.client_document(
        PATH, [DEFAULT_REDIRECT_URI], client_name="e2e switches client"
    )
    return document_server.serve_json(PATH, document)


def _metadata(proxy_url: str) -> dict[str, object]:
    url = f"{proxy_url}/.well-known/oauth-authorization-server"
    return dict(requests.get(url, timeout=10).json())


def test_with_cimd_off_the_sdk_falls_back_to_dcr(
    make_e2e_stack: StackFactory, document_server: DocumentServer, ca_file: str
) -> None:
    url = _serve(document_server)
    stack = make_e2e_stack(
        proxy_overrides={
            "SSL_CERT_FILE": ca_file,
            "CIMD_ALLOWED_PRIVATE_HOSTS": "127.0.0.1",
            "CIMD_ENABLED": "false",
        }
    )
    assert "client_id_metadata_document_supported" not in _metadata(stack.proxy_url)

    report: FlowReport = anyio.run(
        functools.partial(
            connect_and_call, stack.mcp_url, USER, client_metadata_url=url
        )
    )
    assert [e.status for e in report.requests_to("/oauth2/register", "POST")] == [201]
    assert report.storage.client_info is not None
    client_id = report.storage.client_info.client_id
    assert client_id != url
    assert report.before.whoami["client_id"] == client_id
    assert report.after is not None
    assert report.after.echo == "after refresh"
    # The proxy never looked at the document.
    assert document_server.hits[PATH] == 0


def test_with_dcr_off_the_sdk_uses_its_metadata_document(
    make_e2e_stack: StackFactory, document_server: DocumentServer, ca_file: str
) -> None:
    url = _serve(document_server)
    stack = make_e2e_stack(
        proxy_overrides={
            "SSL_CERT_FILE": ca_file,
            "CIMD_ALLOWED_PRIVATE_HOSTS": "127.0.0.1",
            "OAUTH_USE_DYNAMIC_REGISTRATION": "false",
        }
    )
    metadata = _metadata(stack.proxy_url)
    assert "registration_endpoint" not in metadata
    assert metadata["client_id_metadata_document_supported"] is True

    report: FlowReport = anyio.run(
        functools.partial(
            connect_and_call, stack.mcp_url, USER, client_metadata_url=url
        )
    )
    assert report.requests_to("/oauth2/register") == []
    assert report.before.whoami["client_id"] == url
    assert report.after is not None
    assert report.after.echo == "after refresh"
    assert document_server.hits[PATH] == 1
