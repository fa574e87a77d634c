"""POST /oauth2/register: RFC 7591 §3 Dynamic Client Registration."""

from __future__ import annotations

import json
import logging
import time
import typing as t

from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request

from proxy.app_state import state
from proxy.keys.keyring import random_token
from proxy.keys.keyring import sha256_hex
from proxy.oauth import client_metadata
from proxy.oauth.errors import NO_STORE
from proxy.oauth.errors import InvalidClientMetadataError
from proxy.oauth.errors import TooManyRequestsError
from proxy.store.records import ClientRecord
from proxy.web.cors import allow_cors
from proxy.web.rate_limits import limit_requests

if t.TYPE_CHECKING:
    from proxy.clients.catalog import Catalog
    from proxy.config.limits import Limits

log = logging.getLogger(__name__)

bp = Blueprint("register", __name__)
limit_requests(bp, "register")
allow_cors(bp, "POST")


@bp.post("/oauth2/register")
def register_client() -> Response:
    app = state()
    settings = app.settings
    if not settings.dynamic_registration:
        return _registration_off()
    body = _json_body(settings.max_registration_bytes)
    metadata = client_metadata.validate(
        body,
        private_schemes=settings.allowed_redirect_schemes,
        catalogued_uris=app.catalog.private_use_redirect_uris,
    )
    if "token_endpoint_auth_method" not in body:
        metadata["token_endpoint_auth_method"] = _default_auth_method(
            app.catalog, metadata
        )

    record, secret = _new_client(metadata)
    # Unused clients go soon; the first token request slides the TTL to
    # CLIENT_TTL_SECONDS. A registration flood leaves little behind.
    unused_ttl = _unused_client_ttl(settings.limits, settings.client_ttl_seconds)
    unused_until = record.client_id_issued_at + (unused_ttl or 86400)
    _within_quotas(settings.limits, record.client_id, unused_until)
    app.store.create_client(record, unused_ttl)
    app.events.emit(
        "client.registered",
        client_id=record.client_id,
        client_name=record.client_name[:80],
        auth_method=record.token_endpoint_auth_method,
    )

    # RFC 7591 §3.2.1: echo the effective metadata, defaults included (DCR-2).
    response_body: dict[str, t.Any] = {
        "client_id": record.client_id,
        "client_id_issued_at": record.client_id_issued_at,
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


def _registration_off() -> Response:
    """OAUTH_USE_DYNAMIC_REGISTRATION=false: the endpoint is gone (RFC 8414 §2:
    metadata omits it), and says why, so a client's log tells its user."""
    response = jsonify(
        {
            "error": "not_found",
            "error_description": "Dynamic Client Registration is turned off on "
            "this server: use a pre-registered client or a Client ID Metadata "
            "Document.",
        }
    )
    response.status_code = 404
    response.headers.update(NO_STORE)
    return response


def _json_body(max_bytes: int) -> t.Any:
    # GEN-9: /register takes JSON; anything else is invalid_client_metadata.
    if request.mimetype != "application/json":
        raise InvalidClientMetadataError("The body must be application/json.")
    # Read no more than the limit: a huge body is refused, never buffered.
    raw = request.stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise InvalidClientMetadataError("The registration request is too large.")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidClientMetadataError("The body is not valid JSON.") from None


def _default_auth_method(catalog: Catalog, metadata: dict[str, t.Any]) -> str:
    """RFC 7591 §2's default (client_secret_basic), unless the client cannot use it.

    A registration whose redirect URIs are all those of a catalogued client
    that names the methods it can use (Open WebUI refuses a response with any
    but none or client_secret_post) gets the first of them.
    """
    entry = catalog.identify_redirect_uris(metadata["redirect_uris"])
    if entry is not None and entry.quirks.token_endpoint_auth_methods:
        return entry.quirks.token_endpoint_auth_methods[0]
    return str(metadata["token_endpoint_auth_method"])


def _new_client(metadata: dict[str, t.Any]) -> tuple[ClientRecord, str | None]:
    """The record to store and the secret to hand out once (None: public client)."""
    # SEC-4 / DCR-16: the id is ours, random, and never looks like a CIMD URL.
    client_id = "mcp_" + random_token(18)
    method = metadata["token_endpoint_auth_method"]
    # A public client has no secret; a private_key_jwt client proves itself
    # with its own key (RFC 7523 §2.2), so no secret is issued to it either.
    secret = None if method in ("none", "private_key_jwt") else random_token()
    record = ClientRecord(
        client_id=client_id,
        redirect_uris=tuple(metadata["redirect_uris"]),
        token_endpoint_auth_method=method,
        grant_types=tuple(metadata["grant_types"]),
        client_id_issued_at=int(time.time()),
        client_secret_hash=sha256_hex(secret) if secret else None,
        metadata={
            k: v
            for k, v in metadata.items()
            if k not in ("redirect_uris", "token_endpoint_auth_method", "grant_types")
        },
    )
    return record, secret


def _within_quotas(limits: Limits, client_id: str, unused_until: int) -> None:
    """Refuse a registration over the client cap (the per-IP daily quota is a
    bucket checked with the other limits, proxy/web/rate_limits.py).

    Within the cap, `client_id` is counted against it until `unused_until`
    (also if storing it then fails: the cap errs on the side of fewer).
    """
    if not limits.enabled or not limits.max_clients:
        return
    store = state().store.limits
    if not store.reserve_client(
        client_id, unused_until, max_clients=limits.max_clients
    ):
        log.warning("MAX_CLIENTS (%d) unused clients registered", limits.max_clients)
        raise TooManyRequestsError(3600, reason="max_clients")


def _unused_client_ttl(limits: Limits, client_ttl: int) -> int:
    unused = limits.unused_client_ttl_seconds
    if not unused:
        return client_ttl
    return min(unused, client_ttl) if client_ttl else unused
