"""The peer: FastMCP's OIDCProxy in front of the same upstream IdP.

Runs inside bench/.venv-peer (never the project's environment):

    bench/.venv-peer/bin/python bench/peer_server.py --port P --issuer URL

One process (uvicorn), in-memory client storage (FastMCP's default is an
encrypted file store; memory is its cheapest), consent screen on (the
default), `verify_id_token=True` because the mock IdP's access tokens are
opaque, and a FastMCP server with the same `echo` tool as our demo backend.
"""

from __future__ import annotations

import argparse
import json
import logging
import urllib.request

from fastmcp import FastMCP
from fastmcp.server.auth.oidc_proxy import OIDCProxy
from key_value.aio.stores.memory import MemoryStore


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--client-id", default="proxy-client")
    parser.add_argument("--client-secret", default="proxy-secret")
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    discovery_url = args.issuer + "/.well-known/openid-configuration"
    with urllib.request.urlopen(discovery_url, timeout=10) as answer:  # noqa: S310
        discovery = json.load(answer)
    algorithm = discovery.get("id_token_signing_alg_values_supported", ["RS256"])[0]
    auth = OIDCProxy(
        config_url=discovery_url,
        client_id=args.client_id,
        client_secret=args.client_secret,
        base_url=base,
        verify_id_token=True,
        algorithm=algorithm,
        client_storage=MemoryStore(),
        jwt_signing_key="bench-peer-signing-key-0123456789abcdef",
    )
    server = FastMCP("bench peer", auth=auth)

    @server.tool
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    logging.getLogger().setLevel(logging.WARNING)
    server.run(transport="http", host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
