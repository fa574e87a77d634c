"""The MCP SDK client with a Client ID Metadata Document, end to end.

Real processes: redis-server, the proxy under gunicorn with two workers,
oidc-provider-mock upstream, an SDK-built resource server; the client's
document is served over https from 127.0.0.1 by a test-CA server in this
process, which the proxy trusts through SSL_CERT_FILE and may reach through
CIMD_ALLOWED_PRIVATE_HOSTS.
"""

from __future__ import annotations

import functools
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import anyio

from tests.document_server import DocumentServer

from .conftest import StackFactory
from .mcp_oauth_client import DEFAULT_REDIRECT_URI
from .mcp_oauth_client import FlowReport
from .mcp_oauth_client import connect_and_call

USER = "carol-cimd@example.com"
PATH = "/oauth/e2e-client.json"


def test_sdk_client_with_a_metadata_document_connects_without_registering(
    make_e2e_stack: StackFactory, document_server: DocumentServer, ca_file: str
) -> None:
    """CIMD-1, CIMD-12, DISC-10: URL client id, public client, tools, refresh."""
    document = document_server.client_document(
        PATH, [DEFAULT_REDIRECT_URI], client_name="e2e CIMD client"
    )
    client_id = document_server.serve_json(
        PATH, document, headers={"Cache-Control": "max-age=3600"}
    )
    stack = make_e2e_stack(
        proxy_overrides={
            "SSL_CERT_FILE": ca_file,
            "CIMD_ALLOWED_PRIVATE_HOSTS": "127.0.0.1",
        }
    )
    report: FlowReport = anyio.run(
        functools.partial(
            connect_and_call, stack.mcp_url, USER, client_metadata_url=client_id
        )
    )

    # No registration: the URL is the client id.
    assert report.requests_to("/oauth2/register") == []
    assert report.storage.client_info is not None
    assert report.storage.client_info.client_id == client_id
    authorize_query = parse_qs(urlsplit(report.authorize_urls[0]).query)
    assert authorize_query["client_id"] == [client_id]

    # One login, through the consent page that names the document's host.
    assert len(report.logins) == 1
    assert report.logins[0].consent_form is not None
    assert report.logins[0].params["iss"] == stack.proxy_url

    # Tools ran with a proxy token issued to the URL client id, then refreshed.
    assert report.before.whoami["client_id"] == client_id
    assert USER in str(report.before.whoami["sub"])
    assert [e.status for e in report.requests_to("/oauth2/token", "POST")] == [
        200,
        200,
    ]
    assert report.after is not None
    assert report.after.echo == "after refresh"
    assert report.tokens_after is not None
    assert report.tokens_after.refresh_token != report.tokens_before.refresh_token

    # Two workers, one shared cache: the document was fetched once.
    assert document_server.hits[PATH] == 1
