"""The Redis key schema, in code: the only place a key string is built.

Every builder's docstring gives the pattern, the TTL, who writes and who reads
it; ``docs/storage-schema.md`` is the same schema in prose, and
``tests/store/test_keys.py`` fails if a builder is missing from that document.
Keys that one script touches share the Redis Cluster hash tag ``{grant_id}``.
"""

from __future__ import annotations

TXN_TTL_SECONDS = 600


class Keys:
    """Key builders bound to one configurable prefix (default ``mcpoauth:``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def client(self, client_id: str) -> str:
        """``client:{client_id}`` STRING JSON: registered metadata, hashed secret.

        TTL: sliding CLIENT_TTL_SECONDS (0 = none). Written by register; read
        (and the TTL slid with GETEX) by authorize, consent, token, revoke.
        """
        return f"{self.prefix}client:{client_id}"

    def txn(self, proxy_state: str) -> str:
        """``txn:{proxy_state}`` STRING JSON: the approved authorize request.

        Holds the upstream PKCE verifier, nonce and browser binding hash.
        TTL: 10 min. Written (SET NX) by consent, or by authorize when the
        redirect URI is trusted or consent remembered; taken once by callback
        (TAKE_TXN, which leaves a "used" tombstone until the TTL ends).
        """
        return f"{self.prefix}txn:{proxy_state}"

    def grant(self, grant_id: str) -> str:
        """``grant:{grant_id}`` STRING JSON: one authorization, code to last refresh.

        Holds the identity, client, scope, resource, the one-time code's hash,
        the current and previous refresh-token hashes and generation, and the
        sealed upstream tokens. TTL: AUTH_CODE_TTL_SECONDS until the code is
        redeemed, then the refresh idle TTL (capped by the absolute lifetime).
        Written by callback; changed only by the scripts in ``scripts.py``
        (token); deleted by revoke, code replay and refresh-token reuse.
        """
        return f"{self.prefix}grant:{{{grant_id}}}"

    def signing_keys(self) -> str:
        """``keys`` STRING JSON: JWT signing keys, private parts sealed.

        No TTL. Created once with SET NX by the first worker that needs it;
        read by every worker (cached in-process, re-read every 300 s:
        ``RELOAD_INTERVAL_SECONDS`` in ``proxy/keys/signing_keys.py``).
        """
        return f"{self.prefix}keys"
