"""GET /.well-known/oauth-authorization-server: RFC 8414, OIDC discovery, JWKS."""

from __future__ import annotations

import typing as t
from urllib.parse import urlsplit

from flask import Blueprint
from flask import Response
from flask import jsonify

from proxy.app_state import state
from proxy.oauth.client_assertion import SIGNING_ALGORITHMS
from proxy.oauth.scopes import OFFLINE_ACCESS
from proxy.web.cors import allow_cors

bp = Blueprint("metadata", __name__)
allow_cors(bp, "GET")

DISCOVERY_CACHE = "public, max-age=300"
#: `none` stays listed: Claude and opencode use CIMD only when it is (DISC-8).
AUTH_METHODS = ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"]


def server_metadata() -> dict[str, t.Any]:
    """RFC 8414 §2: advertise exactly what is implemented, omit what is not."""
    settings = state().settings
    document: dict[str, t.Any] = {
        "issuer": settings.issuer,
        "authorization_endpoint": settings.url("/oauth2/authorize"),
        "token_endpoint": settings.url("/oauth2/token"),
        "jwks_uri": settings.url("/.well-known/jwks.json"),
    }
    if settings.dynamic_registration:
        document["registration_endpoint"] = settings.url("/oauth2/register")
    if any(client.can_introspect for client in settings.static_clients):
        # DISC-11: advertised only when someone may use it.
        document["introspection_endpoint"] = settings.url("/oauth2/introspect")
        document["introspection_endpoint_auth_methods_supported"] = [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ]
        document["introspection_endpoint_auth_signing_alg_values_supported"] = list(
            SIGNING_ALGORITHMS
        )
    document.update(
        {
            "revocation_endpoint": settings.url("/oauth2/revoke"),
            "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
            # RFC 8414 §2: the JWS algorithms a private_key_jwt may be signed with.
            "revocation_endpoint_auth_signing_alg_values_supported": list(
                SIGNING_ALGORITHMS
            ),
            "scopes_supported": [*settings.offered_scopes, OFFLINE_ACCESS],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": AUTH_METHODS,
            "token_endpoint_auth_signing_alg_values_supported": list(
                SIGNING_ALGORITHMS
            ),
            "code_challenge_methods_supported": ["S256"],
            # RFC 9207 §3: every authorization response carries iss.
            "authorization_response_iss_parameter_supported": True,
        }
    )
    if settings.client_documents.enabled:
        # CIMD §5 (DISC-10): advertised if and only if URL client ids work.
        document["client_id_metadata_document_supported"] = True
    return document


def _document(body: dict[str, t.Any]) -> Response:
    response = jsonify(body)
    response.headers["Cache-Control"] = DISCOVERY_CACHE
    return response


@bp.get("/.well-known/oauth-authorization-server")
@bp.get("/.well-known/openid-configuration")
def show_metadata() -> Response:
    return _document(server_metadata())


@bp.get("/.well-known/oauth-authorization-server/<path:issuer_path>")
@bp.get("/.well-known/openid-configuration/<path:issuer_path>")
def show_metadata_for_path(issuer_path: str) -> Response:
    """RFC 8414 §3.1 path insertion, for an issuer with a path component."""
    own_path = urlsplit(state().settings.issuer).path.strip("/")
    if not own_path or issuer_path.strip("/") != own_path:
        return _not_found()
    return _document(server_metadata())


@bp.get("/.well-known/jwks.json")
def show_jwks() -> Response:
    return _document(state().signing_keys.jwks())


def _not_found() -> Response:
    response = jsonify({"error": "not_found"})
    response.status_code = 404
    return response
