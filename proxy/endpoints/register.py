"""POST /oauth2/register: RFC 7591 §3 Dynamic Client Registration."""

from __future__ import annotations

import json
import time
import typing as t

from flask import Blueprint
from flask import Response
from flask import abort
from flask import jsonify
from flask import request

from proxy.app_state import state
from proxy.keys.keyring import random_token
from proxy.keys.keyring import sha256_hex
from proxy.oauth import client_metadata
from proxy.oauth.errors import NO_STORE
from proxy.oauth.errors import InvalidClientMetadataError
from proxy.store.records import ClientRecord
from proxy.web.cors import allow_cors

bp = Blueprint("register", __name__)
allow_cors(bp, "POST")


@bp.post("/oauth2/register")
def register_client() -> Response:
    app = state()
    settings = app.settings
    if not settings.dynamic_registration:
        abort(404)
    # GEN-9: /register takes JSON; anything else is invalid_client_metadata.
    if request.mimetype != "application/json":
        raise InvalidClientMetadataError("The body must be application/json.")
    raw = request.get_data(cache=False)
    if len(raw) > settings.max_registration_bytes:
        raise InvalidClientMetadataError("The registration request is too large.")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidClientMetadataError("The body is not valid JSON.") from None
    metadata = client_metadata.validate(
        body, private_schemes=settings.allowed_redirect_schemes
    )

    # SEC-4 / DCR-16: the id is ours, random, and never looks like a CIMD URL.
    client_id = "mcp_" + random_token(18)
    method = metadata["token_endpoint_auth_method"]
    secret = None if method == "none" else random_token()
    issued_at = int(time.time())
    record = ClientRecord(
        client_id=client_id,
        redirect_uris=tuple(metadata["redirect_uris"]),
        token_endpoint_auth_method=method,
        grant_types=tuple(metadata["grant_types"]),
        client_id_issued_at=issued_at,
        client_secret_hash=sha256_hex(secret) if secret else None,
        metadata={
            k: v
            for k, v in metadata.items()
            if k not in ("redirect_uris", "token_endpoint_auth_method", "grant_types")
        },
    )
    app.store.create_client(record, settings.client_ttl_seconds)

    # RFC 7591 §3.2.1: echo the effective metadata, defaults included (DCR-2).
    response_body: dict[str, t.Any] = {
        "client_id": client_id,
        "client_id_issued_at": issued_at,
    }
    if secret:
        response_body["client_secret"] = secret
        # DCR-4: present whenever a secret is issued; 0 means it never expires.
        response_body["client_secret_expires_at"] = 0
    response_body.update(metadata)
    response = jsonify(response_body)
    response.status_code = 201
    response.headers.update(NO_STORE)
    return response
