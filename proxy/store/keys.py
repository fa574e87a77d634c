"""The Redis key schema, in code: the only place a key string is built.

Every builder's docstring gives the pattern, the TTL, who writes and who reads
it; ``docs/storage-schema.md`` is the same schema in prose, and
``tests/store/test_keys.py`` fails if a builder is missing from that document.

Redis Cluster (docs/storage-schema.md, "The Cluster rule"): the literal braces
in a key are its hash tag, and only the tag decides the key's slot. Keys that
one script touches carry the same tag: ``{grant_id}`` (``grant``,
``streams``), ``{document_id}`` (``document``, ``document_failure``,
``document_lock``, ``document_forced``), ``{ip client}`` (``auth_failures``,
``auth_block``), ``{trN}`` (the ``trace`` keys of one bucket). A key only
ever used alone needs no tag. A pipeline that is not a transaction may mix
slots; a script or ``MULTI`` may not, and redis-py's cluster client refuses
one that tries. A new key used by a multi-key script
gets the tag of the keys it is used with.
"""

from __future__ import annotations

TXN_TTL_SECONDS = 600
#: How long the readiness probe's key lives: a few probes' worth, no more.
READY_PROBE_TTL_SECONDS = 30
#: A flow trace keeps its newest this-many steps (a refresh loop cannot grow it).
TRACE_MAX_STEPS = 64
#: The by-client and by-user indexes keep this many newest trace ids each.
TRACE_INDEX_MAX = 100
#: The index of recent traces (``--last N``) keeps this many newest trace ids.
TRACE_RECENT_MAX = 1000


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

    def user_grants(self, sub_hash: str) -> str:
        """``grants:user:{sub_hash}`` ZSET: one user's grant ids, by absolute expiry.

        sub_hash is the first 32 hex digits of the SHA-256 of the user's
        ``sub`` (no raw ids or e-mail addresses in key names). Members are
        grant ids scored by the grant's ``expires_at`` (epoch seconds). TTL:
        EXPIREAT the latest member's score, so the index dies with its last
        grant and never before it. Written by INDEX_GRANT, pipelined with the
        callback's ``SET grant``; members whose grant is gone (revoked,
        expired) are removed when read (``Store.grants_of_user``, the admin
        CLI).
        """
        return f"{self.prefix}grants:user:{sub_hash}"

    def client_grants(self, client_hash: str) -> str:
        """``grants:client:{client_hash}`` ZSET: one client's grant ids, by expiry.

        client_hash is the first 32 hex digits of the SHA-256 of the client
        id. Same members, scores, TTL, writer and lazy pruning as
        ``user_grants``; read by ``Store.grants_of_client`` and the admin CLI
        (``clients disable``, ``clients delete``).
        """
        return f"{self.prefix}grants:client:{client_hash}"

    def client_disabled(self, client_hash: str) -> str:
        """``disabled:{client_hash}`` STRING JSON: an operator disabled this client.

        client_hash is the first 32 hex digits of the SHA-256 of the client id;
        the value holds the id and when it was disabled. While it exists the
        client gets no authorization, token or refresh. TTL: for a registered
        (DCR) client the longer of its remaining TTL and CLIENT_TTL_SECONDS,
        plus a minute, so the mark never lapses before the registration; none
        for a static or URL client (until ``clients enable``). Written
        and deleted by ``python -m proxy admin clients disable / enable``;
        read with the client wherever it is loaded (``DisabledClients``).
        """
        return f"{self.prefix}disabled:{client_hash}"

    def signing_keys(self) -> str:
        """``keys`` STRING JSON: JWT signing keys, private parts sealed.

        No TTL. Created with SET NX by the first worker that needs it, and
        again by the first that finds it gone (Redis restarted empty); read on
        every signature, and by every worker on an unknown ``kid``, for the
        JWKS and on a 30 s schedule (``proxy/keys/signing_keys.py``). Never
        written when the operator pins SIGNING_KEYS.
        """
        return f"{self.prefix}keys"

    def rate(self, scope: str, subject: str) -> str:
        """``rate:{scope}:{subject}`` STRING: one GCRA bucket (its arrival time, ms).

        scope is ``ip:<endpoint>``, ``client``, ``grant`` or ``fetch-host``;
        subject the IP, client id, grant id or document host (long ones
        hashed). ``ip:cimd-fetch`` and ``fetch-host`` count network fetches of
        client documents (RATE-4). TTL: until the bucket is
        full again. Written and read only by CHARGE_RATE.
        """
        return f"{self.prefix}rate:{scope}:{subject}"

    def streams(self, grant_id: str) -> str:
        """``streams:{grant_id}`` ZSET: the gateway's open streams of one grant.

        Members are lease ids, scored by the lease's end (ms, Redis' clock).
        TTL: the longest lease; a worker renews its leases every third of
        STREAM_LEASE_SECONDS, so a killed worker's streams stop counting when
        their leases end. Written by ACQUIRE_STREAM (which trims ended leases
        and counts against MAX_STREAMS_PER_GRANT), RENEW_STREAMS and ``ZREM``
        when a stream ends; read by ACQUIRE_STREAM.
        """
        return f"{self.prefix}streams:{{{grant_id}}}"

    def mcp_session(self, session_hash: str) -> str:
        """``mcpsession:{session_hash}`` STRING: who owns one MCP session id.

        session_hash is the first 32 hex digits of the SHA-256 of the backend's
        ``Mcp-Session-Id`` (no raw session id in key names; with MCP_SERVERS,
        of the server's path, a newline and the id); the value is the
        owner's hash (SHA-256 of client id and subject, 32 hex digits). TTL:
        MCP_SESSION_TTL_SECONDS, slid by every request that presents the id.
        Written (SET NX EX) by the gateway when a backend response names a new
        session; read (GETEX, in the pipeline that checks the grant) by every
        gateway request carrying ``Mcp-Session-Id``; deleted (RELEASE_LOCK,
        only by its owner) after the backend accepted the owner's DELETE or
        answered 404 for it.
        """
        return f"{self.prefix}mcpsession:{{{session_hash}}}"

    def auth_failures(self, ip: str, client: str) -> str:
        """``authfail:{{ip} {client}}`` STRING counter: failed client authentications.

        Of one IP for one client id. TTL: the back-off in force plus a quiet
        window. Written by RECORD_AUTH_FAILURE after a 401 at token, revoke or
        introspect. Shares its hash tag with ``auth_block``: one script.
        """
        return f"{self.prefix}authfail:{{{ip} {client}}}"

    def auth_block(self, ip: str, client: str) -> str:
        """``authblock:{{ip} {client}}`` STRING flag: the back-off failures earned.

        TTL: the back-off (doubling per failure past AUTH_FAILURES_ALLOWED, up
        to AUTH_BACKOFF_MAX_SECONDS). Written by RECORD_AUTH_FAILURE; read
        (PTTL) before client authentication at token, revoke and introspect.
        """
        return f"{self.prefix}authblock:{{{ip} {client}}}"

    def assertion_jti(self, client_hash: str, jti_hash: str) -> str:
        """``jti:{client_hash}:{jti_hash}`` STRING flag: a spent client assertion.

        SHA-256 of the client id (first 32 hex digits) and of the assertion's
        ``jti``: a ``private_key_jwt`` assertion is single use (OpenID Connect
        Core §9). TTL: the assertion's ``exp`` minus now, plus the clock-skew
        leeway, so it outlives every moment the assertion could be accepted.
        Written (SET NX EX) by client authentication at token, revoke and
        introspect; a SET that finds it already there is a replay.
        """
        return f"{self.prefix}jti:{client_hash}:{jti_hash}"

    def client_index(self) -> str:
        """``clients`` ZSET: recent DCR client ids, scored by their unused expiry.

        No TTL; members past their score are trimmed by register before it
        counts them against MAX_CLIENTS.
        """
        return f"{self.prefix}clients"

    def document(self, document_id: str) -> str:
        """``doc:{document_id}`` STRING JSON: a validated client document, cached.

        document_id is ``<kind>:<sha256(url)[:32]>``, kind ``client_metadata``
        or ``jwks``. Holds the body and when it stops being fresh and stops
        being usable (stale-if-error). TTL: the freshness lifetime from the
        response's Cache-Control/Expires, clamped to CIMD_CACHE_MIN/MAX_SECONDS,
        plus CIMD_STALE_IF_ERROR_SECONDS. Written after a fetch that passed
        validation (never for a failed or invalid one); read by authorize,
        consent, token and revoke for URL client ids (``DocumentCache``).
        """
        return f"{self.prefix}doc:{{{document_id}}}"

    def document_failure(self, document_id: str) -> str:
        """``docfail:{document_id}`` STRING JSON: why the last fetch failed.

        The negative cache: while it lives, the document is not fetched again
        (a stale copy is served if one is usable). TTL:
        CIMD_NEGATIVE_CACHE_SECONDS. Written after a failed fetch or an
        invalid document; deleted by the next successful fetch.
        """
        return f"{self.prefix}docfail:{{{document_id}}}"

    def document_lock(self, document_id: str) -> str:
        """``doclock:{document_id}`` STRING: the token of the worker fetching it.

        At most one fetch per document at a time across every worker and
        instance (RATE-4); the others wait for its result. TTL: the fetch
        deadline plus 2 s (SET NX PX); deleted by its holder (RELEASE_LOCK).
        """
        return f"{self.prefix}doclock:{{{document_id}}}"

    def document_forced(self, document_id: str) -> str:
        """``docforce:{document_id}`` STRING flag: a fresh copy was bypassed.

        Bounds re-fetches for an unknown key id to one per
        JWKS_REFETCH_MIN_SECONDS (its TTL, SET NX EX); never read otherwise.
        """
        return f"{self.prefix}docforce:{{{document_id}}}"

    def ready_probe(self) -> str:
        """``readyz`` STRING: the time of the last readiness probe's write.

        TTL: READY_PROBE_TTL_SECONDS (30 s). Written (SET EX) by every
        ``GET /readyz``, to learn whether Redis accepts writes (not at
        ``maxmemory`` under noeviction, not a read-only replica); never read.
        """
        return f"{self.prefix}readyz"

    def trace(self, trace_id: str) -> str:
        """``trace:{trN}:{trace_id}`` LIST of JSON steps: one attempt's timeline.

        Each element ``{"at", "step", "outcome", "rid", ...fields}``; never a
        code, token, ``state`` or secret. Capped at TRACE_MAX_STEPS (newest
        kept). TTL: TRACE_TTL_SECONDS (24 h), renewed by every append.
        Written only by APPEND_TRACES from the trace sink's batched flush
        (``observability/trace.py``); read by ``python -m proxy trace``.
        The hash tag is the trace id's first hex digit (``N``): 16 buckets,
        so one script appends every trace of a bucket in a flush, where one
        script per trace cost the flush most of its time (profiled).
        """
        return f"{self.prefix}trace:{{tr{trace_id[:1]}}}:{trace_id}"

    def unbucketed_trace(self, trace_id: str) -> str:
        """``trace:{trace_id}`` LIST: a trace as builds before the buckets wrote it.

        No longer written; read beside ``trace`` by ``python -m proxy trace``
        so that traces from before an upgrade, and flows whose steps a
        rolling deploy split over both keys, still show whole until the old
        keys' TTL (TRACE_TTL_SECONDS) ends them.
        """
        return f"{self.prefix}trace:{{{trace_id}}}"

    def trace_index(self, kind: str, subject_hash: str) -> str:
        """``traces:{kind}:{subject_hash}`` ZSET: trace ids by first-seen time (ms).

        kind ``client`` or ``user``; subject_hash is the first 32 hex digits of
        the SHA-256 of the client id or the user's ``sub`` (no raw ids or
        e-mail addresses in key names). Capped at TRACE_INDEX_MAX newest; ids
        older than the trace TTL are trimmed on every add. TTL:
        TRACE_TTL_SECONDS, renewed by every add. Written by INDEX_TRACE;
        read by ``python -m proxy trace --client/--user``.
        """
        return f"{self.prefix}traces:{kind}:{subject_hash}"

    def trace_recent(self) -> str:
        """``traces:recent`` ZSET: every trace id by first-seen time (ms).

        Capped at TRACE_RECENT_MAX newest, trimmed by age like the indexes.
        TTL: TRACE_TTL_SECONDS, renewed by every add. Written by INDEX_TRACE;
        read by ``python -m proxy trace --last N``.
        """
        return f"{self.prefix}traces:recent"
