"""A minimal MCP resource server that trusts the proxy as its authorization server.

It is the "standalone authorization server" deployment: the MCP
server lives elsewhere, verifies the proxy's access-token JWTs offline against the
proxy's JWKS, and publishes RFC 9728 metadata naming the proxy. The end-to-end
tests use it to prove that tokens minted by the proxy are usable by a real MCP
server built with the official SDK.

Run: ``python tests/e2e/mcp_resource_server.py --port P --issuer ISSUER
--resource http://127.0.0.1:P/mcp``
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import anyio
import httpx2
import uvicorn
from joserfc import jws
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer

logger = logging.getLogger("e2e.resource_server")

#: Access tokens are RFC 9068 JWTs; both spellings of the media type are allowed.
ACCEPTED_TYP = {"at+jwt", "application/at+jwt"}
#: Only the algorithm the proxy promises; never trust the header's choice blindly.
ALGORITHMS = ["ES256"]
#: A token with an unknown kid triggers a JWKS refetch at most this often, so a
#: stream of garbage tokens cannot turn the server into a JWKS-fetching amplifier.
MIN_REFETCH_INTERVAL = 2.0


class JwksCache:
    """The proxy's JWKS, fetched lazily and refetched when a new ``kid`` shows up."""

    def __init__(self, jwks_url: str) -> None:
        self.jwks_url = jwks_url
        self._keys: KeySet | None = None
        self._kids: set[str] = set()
        self._fetched_at = 0.0
        self._lock = anyio.Lock()

    async def _fetch(self) -> None:
        async with httpx2.AsyncClient(timeout=5.0) as client:
            response = await client.get(self.jwks_url)
            response.raise_for_status()
            data = response.json()
        self._keys = KeySet.import_key_set(data)
        self._kids = {k["kid"] for k in data.get("keys", []) if "kid" in k}
        self._fetched_at = time.monotonic()
        logger.info("fetched JWKS from %s: kids=%s", self.jwks_url, sorted(self._kids))

    async def key_set_for(self, kid: str) -> KeySet | None:
        """Return a key set that contains ``kid``, refetching once if it is unknown."""
        async with self._lock:
            if kid in self._kids and self._keys is not None:
                return self._keys
            recently = time.monotonic() - self._fetched_at < MIN_REFETCH_INTERVAL
            if self._keys is None or not recently:
                try:
                    await self._fetch()
                except (httpx2.HTTPError, ValueError) as exc:
                    logger.warning("JWKS fetch from %s failed: %s", self.jwks_url, exc)
                    return None
            return self._keys if kid in self._kids else None


class ProxyJwtVerifier:
    """TokenVerifier (mcp SDK protocol) for the proxy's ES256 ``at+jwt`` tokens."""

    def __init__(self, issuer: str, resource: str) -> None:
        self.issuer = issuer
        self.resource = resource
        self.jwks = JwksCache(f"{issuer}/.well-known/jwks.json")

    async def verify_token(self, token: str) -> AccessToken | None:
        """Return the token's access info, or None for anything not fully valid."""
        try:
            header = jws.extract_compact(token.encode()).protected
        except (JoseError, ValueError) as exc:
            logger.info("rejecting token: unparseable (%s)", exc)
            return None
        kid = header.get("kid")
        if header.get("typ", "").lower() not in ACCEPTED_TYP:
            logger.info("rejecting token: typ=%r", header.get("typ"))
            return None
        if header.get("alg") not in ALGORITHMS or not isinstance(kid, str):
            logger.info("rejecting token: alg=%r kid=%r", header.get("alg"), kid)
            return None
        keys = await self.jwks.key_set_for(kid)
        if keys is None:
            logger.info("rejecting token: unknown kid %r", kid)
            return None
        try:
            decoded = jwt.decode(token, keys, algorithms=ALGORITHMS)
            JWTClaimsRegistry(
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.resource},
                exp={"essential": True},
                sub={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            logger.info("rejecting token: %s", exc)
            return None
        claims: dict[str, Any] = dict(decoded.claims)
        scope = claims.get("scope", "")
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id", "")),
            scopes=scope.split() if isinstance(scope, str) else [],
            expires_at=int(claims["exp"]),
            resource=self.resource,
            subject=str(claims["sub"]),
            claims=claims,
        )


def build_server(issuer: str, resource: str, required_scope: str | None) -> MCPServer:
    """Build the MCP server with bearer auth, PRM and the two test tools."""
    scopes = [required_scope] if required_scope else None
    server: MCPServer = MCPServer(
        name="e2e-resource-server",
        token_verifier=ProxyJwtVerifier(issuer, resource),
        auth=AuthSettings(
            issuer_url=issuer,
            resource_server_url=resource,
            required_scopes=scopes,
            validate_token_resource=True,
        ),
    )

    @server.tool()
    def whoami() -> dict[str, Any]:
        """Who the bearer token says the caller is."""
        token = get_access_token()
        if token is None:  # the auth middleware guarantees a token; be explicit
            raise ValueError("no access token in context")
        claims = token.claims or {}
        return {
            "sub": token.subject,
            "client_id": token.client_id,
            "scope": " ".join(token.scopes),
            "aud": claims.get("aud"),
            "iss": claims.get("iss"),
        }

    @server.tool()
    def echo(text: str) -> str:
        """Return ``text`` unchanged."""
        return text

    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--issuer", required=True, help="the proxy's PUBLIC_URL")
    parser.add_argument("--resource", required=True, help="this server's /mcp URL")
    parser.add_argument(
        "--required-scope",
        default="mcp",
        help="scope every token must carry ('' for none)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = build_server(
        args.issuer.rstrip("/"), args.resource, args.required_scope or None
    )
    app = server.streamable_http_app(host=args.host)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
