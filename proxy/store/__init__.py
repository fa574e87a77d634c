"""The store: one typed method per operation on the Redis key schema.

Connection errors are not caught here: they propagate to the app's handler,
which answers 503 ``temporarily_unavailable``. A transient failure therefore
never looks like "not found" and never triggers a revocation.
"""

from __future__ import annotations

import json
import logging
import typing as t
from dataclasses import dataclass
from enum import Enum

import redis
import redis.exceptions

from proxy.keys.keyring import Keyring
from proxy.keys.keyring import SealError
from proxy.keys.keyring import sha256_hex
from proxy.store import scripts
from proxy.store.disabled_clients import DisabledClients
from proxy.store.disabled_clients import forget_primed as forget_primed_marks
from proxy.store.documents import DocumentRecords
from proxy.store.documents import forget_primed as forget_primed_documents
from proxy.store.grant_index import READ_BATCH
from proxy.store.grant_index import GrantIndex
from proxy.store.grant_index import summaries
from proxy.store.keys import READY_PROBE_TTL_SECONDS
from proxy.store.keys import TXN_TTL_SECONDS
from proxy.store.keys import Keys
from proxy.store.limits import Limiter
from proxy.store.pipelines import execute_with_scripts
from proxy.store.records import ClientRecord
from proxy.store.records import Grant
from proxy.store.records import GrantSummary
from proxy.store.records import Transaction
from proxy.store.records import claims_json
from proxy.store.sessions import SessionOwners
from proxy.store.streams import StreamLeases
from proxy.store.traces import TraceRecords

log = logging.getLogger(__name__)


class BindingMismatchError(Exception):
    """A transaction was claimed by a browser other than the one bound to it."""


class RedeemResult(Enum):
    OK = "OK"
    NOT_FOUND = "NOT_FOUND"
    EXPIRED = "EXPIRED"
    REPLAY_TOLERATED = "REPLAY_TOLERATED"
    REPLAYED = "REPLAYED"


class RotateResult(Enum):
    OK = "OK"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"


@dataclass(frozen=True, slots=True)
class ClientInUse:
    """The client a token request serves, and its full TTL (0: none)."""

    client_id: str
    ttl: int


class NotReplicatedError(redis.exceptions.TimeoutError):
    """A code redemption or rotation was not acknowledged by enough replicas.

    Raised with ``replica_acks`` (REDIS_WAIT_REPLICAS): the client gets a 503
    and keeps the token it presented, which stays good if a failover drops
    the unreplicated write, and is answered from the grace window if not.
    """


#: How long a redemption or rotation waits for its replica acknowledgements.
REPLICA_WAIT_MS = 500


class Store:
    """Typed access to Redis; one client per app, safe across gunicorn forks."""

    def __init__(
        self, client: redis.Redis, prefix: str, *, replica_acks: int = 0
    ) -> None:
        self.redis = client
        self.keys = Keys(prefix)
        #: WAIT for this many replicas after a redemption or rotation (0: none).
        self.replica_acks = replica_acks
        self._redeem_code = client.register_script(scripts.REDEEM_CODE)
        self._rotate_refresh = client.register_script(scripts.ROTATE_REFRESH)
        self._take_txn = client.register_script(scripts.TAKE_TXN)
        self._begin_refresh = client.register_script(scripts.BEGIN_REFRESH)
        self._release_lease = client.register_script(scripts.RELEASE_LEASE)
        self._reseal_upstream = client.register_script(scripts.RESEAL_UPSTREAM)
        self._replace_signing_keys = client.register_script(
            scripts.REPLACE_SIGNING_KEYS
        )
        self.limits = Limiter(client, self.keys)
        self.streams = StreamLeases(client, self.keys)
        self.sessions = SessionOwners(client, self.keys)
        self.documents = DocumentRecords(client, self.keys)
        self.traces = TraceRecords(client, self.keys)
        self.grant_index = GrantIndex(client, self.keys)
        self.disabled_clients = DisabledClients(client, self.keys)

    # -- health ---------------------------------------------------------------
    def ping(self) -> bool:
        return bool(self.redis.ping())

    def probe_write(self, now_ms: int) -> None:
        """Write one tiny key with a short TTL; raise what Redis answers.

        PING proves only that Redis answers. A Redis at ``maxmemory`` under
        noeviction, or a read-only replica, answers PING yet refuses every
        write, and no login can finish. One SET finds out; it is refused
        like any other write, because Redis checks memory before the command
        runs, however small the value.
        """
        self.redis.set(self.keys.ready_probe(), now_ms, ex=READY_PROBE_TTL_SECONDS)

    # -- clients --------------------------------------------------------------
    def create_client(self, record: ClientRecord, ttl: int) -> bool:
        """Store a new client; False if the id exists (never overwrite)."""
        return bool(
            self.redis.set(
                self.keys.client(record.client_id),
                record.to_json(),
                nx=True,
                ex=ttl or None,
            )
        )

    @staticmethod
    def forget_primed() -> None:
        """End of a request: reads one of its pipelines handed over and no
        later read used are dropped, not left for the next request on this
        thread to take (they would be under a second old; still stale)."""
        forget_primed_marks()
        forget_primed_documents()

    def load_client(self, client_id: str) -> ClientRecord | None:
        """Read a client as it is: only the token endpoint slides its TTL.

        Its disabled mark rides in the same round trip (primed for
        ``disabled_clients.is_disabled``).
        """
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.keys.client(client_id))
        pipe.get(self.disabled_clients.key_of(client_id))
        raw, disabled = pipe.execute()
        self.disabled_clients.prime(client_id, disabled)
        return ClientRecord.from_json(_text(raw)) if raw else None

    def read_document_client(self, client_id: str, document: str) -> None:
        """Read a URL client's disabled mark and cached document in one round
        trip, primed for ``disabled_clients`` and the document cache."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.disabled_clients.key_of(client_id))
        for key in self.documents.keys_of(document):
            pipe.get(key)
        disabled, record, failure = pipe.execute()
        self.disabled_clients.prime(client_id, disabled)
        self.documents.prime(document, record, failure)

    def load_client_and_grant(
        self,
        client_id: str,
        grant_id: str,
        *,
        document: str | None = None,
        jwks_document: str | None = None,
    ) -> tuple[ClientRecord | None, Grant | None, str | None]:
        """Both records, and the signing keys record, in one round trip (the
        token endpoint's first read; the keys are what its token is signed with).

        A URL client has no record: with `document` (its document id) the same
        round trip reads its cached document instead, primed for the cache.
        The client's TTL is left alone here: a made-up code must not keep an
        unused registration alive. `redeem_code` slides it. `jwks_document`:
        a client's key set read ahead, primed for the document cache (J71).
        """
        pipe = self.redis.pipeline(transaction=False)
        self._read_client(pipe, client_id, document, jwks_document)
        pipe.get(self.keys.grant(grant_id))
        pipe.get(self.keys.signing_keys())
        *raw_client, raw_grant, raw_keys = pipe.execute()
        client = self._client_read(raw_client, client_id, document, jwks_document)
        grant = Grant.from_json(grant_id, raw_grant) if raw_grant else None
        return client, grant, raw_keys

    def _read_client(
        self,
        pipe: t.Any,
        client_id: str,
        document: str | None,
        jwks_document: str | None = None,
    ) -> None:
        """Queue the reads of a client: its disabled mark, then its record
        (or, for a URL client, its cached document), then the cached key set
        it is expected to sign with, if one is named."""
        pipe.get(self.disabled_clients.key_of(client_id))
        if document is None:
            pipe.get(self.keys.client(client_id))
        else:
            for key in self.documents.keys_of(document):
                pipe.get(key)
        if jwks_document is not None:
            for key in self.documents.keys_of(jwks_document):
                pipe.get(key)

    def _client_read(
        self,
        replies: list[t.Any],
        client_id: str,
        document: str | None,
        jwks_document: str | None = None,
    ) -> ClientRecord | None:
        """Take the replies `_read_client` queued, in its order."""
        disabled, *replies = replies
        self.disabled_clients.prime(client_id, disabled)
        client = None
        if document is not None:
            record, failure, *replies = replies
            self.documents.prime(document, record, failure)
        else:
            raw, *replies = replies
            client = ClientRecord.from_json(_text(raw)) if raw else None
        if jwks_document is not None:
            self.documents.prime(jwks_document, *replies)
        return client

    # -- transactions ---------------------------------------------------------
    def create_txn(self, proxy_state: str, txn: Transaction) -> bool:
        """Store an approved request once; False if this state was used already.

        The value starts with the browser binding hash, so TAKE_TXN can refuse a
        foreign browser without parsing JSON in Lua.
        """
        value = f"{txn.browser_hash}|{txn.to_json()}"
        return bool(
            self.redis.set(
                self.keys.txn(proxy_state), value, nx=True, ex=TXN_TTL_SECONDS
            )
        )

    def take_txn(self, proxy_state: str, browser_hash: str) -> Transaction | None:
        """Take a transaction once, only for the browser bound to it.

        Returns None when unknown, expired or already taken; raises
        BindingMismatchError, consuming nothing, for another browser.
        """
        raw = self._take_txn(keys=[self.keys.txn(proxy_state)], args=[browser_hash])
        if not raw:
            return None
        text = _text(raw)
        if text == "MISMATCH":
            raise BindingMismatchError(proxy_state[:8])
        return Transaction.from_json(text.split("|", 1)[1])

    # -- grants ---------------------------------------------------------------
    def create_grant(self, grant: Grant, ttl: int) -> None:
        """Store a new grant and index it by user and by client, in one round trip.

        Not a MULTI: the grant and the two indexes sit in different Redis
        Cluster slots. Were an index write lost, the grant would only be
        missing from a listing; the grant itself is the SET, sent first.
        """
        key = self.keys.grant(grant.grant_id)

        def queue(pipe: t.Any) -> None:
            # Sent twice after NOSCRIPT: the SET writes the same record again.
            pipe.set(key, grant.to_json(), ex=ttl)
            self.grant_index.queue_add(pipe, grant)

        execute_with_scripts(self.redis, queue, (scripts.INDEX_GRANT,))

    def grants_of_user(self, sub: str) -> list[GrantSummary]:
        """The user's live grants, newest first (dead index members are pruned)."""
        return summaries(self.grant_index.of_user(sub))

    def grants_of_client(self, client_id: str) -> list[GrantSummary]:
        """The client's live grants, newest first (dead index members are pruned)."""
        return summaries(self.grant_index.of_client(client_id))

    def load_grant(self, grant_id: str) -> Grant | None:
        raw = self.redis.get(self.keys.grant(grant_id))
        return Grant.from_json(grant_id, _text(raw)) if raw else None

    def load_upstream_access_token(self, grant_id: str, keyring: Keyring) -> str | None:
        """The grant's upstream access token (gateway forwarding, when enabled).

        Sealed under a previous PROXY_SECRET_KEY, it is resealed under the
        current one (RESEAL_UPSTREAM). Sealed under no key we hold, it is
        treated as gone: None, never an error (decision J31).
        """
        grant = self.load_grant(grant_id)
        if grant is None:
            return None
        context = self.keys.grant(grant_id)
        try:
            opened = keyring.open_current(grant.upstream, context=context)
        except SealError:
            log.warning("grant %s: upstream tokens do not open", grant_id[:8])
            return None
        if opened.resealed is not None:
            self.reseal_upstream(grant_id, grant.upstream, opened.resealed)
        tokens = json.loads(opened.plaintext)
        token = tokens.get("access_token")
        return token if isinstance(token, str) and token else None

    def reseal_upstream(self, grant_id: str, sealed: str, resealed: str) -> bool:
        """Swap a grant's upstream tokens for the same ones under the current key,
        unless they changed since ``sealed`` was read (RESEAL_UPSTREAM)."""
        keys = [self.keys.grant(grant_id)]
        return bool(self._reseal_upstream(keys=keys, args=[sealed, resealed]))

    def grant_exists(self, grant_id: str) -> bool:
        return bool(self.redis.exists(self.keys.grant(grant_id)))

    def revoke_grant(self, grant_id: str) -> bool:
        """End a grant (DEL): every token it issued stops working at once.

        Its index entries are left for the next reader to prune: this runs on
        the token and revoke paths, which know only the grant id, and finding
        the user and client would cost them a round trip.
        """
        return bool(self.redis.delete(self.keys.grant(grant_id)))

    def revoke_grants(self, grants: t.Iterable[Grant]) -> int:
        """End many grants (operators: offboarding, a disabled client) and drop
        them from both indexes; how many were still alive.

        One pipeline per batch, not a MULTI: the keys span cluster slots, and a
        grant deleted without its index entry is only pruned later.
        """
        ended = 0
        batch: list[Grant] = []
        for grant in grants:
            batch.append(grant)
            if len(batch) >= READ_BATCH:
                ended += self._revoke_batch(batch)
                batch = []
        if batch:
            ended += self._revoke_batch(batch)
        return ended

    def _revoke_batch(self, grants: list[Grant]) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for grant in grants:
            pipe.delete(self.keys.grant(grant.grant_id))
            self.grant_index.queue_forget(pipe, grant)
        replies = pipe.execute()
        return sum(int(r) for r in replies[::3])

    def load_client_and_begin_refresh(
        self,
        client_id: str,
        grant_id: str,
        *,
        presented_hash: str,
        now: int,
        lease: int,
        lease_holder: str,
        document: str | None = None,
        jwks_document: str | None = None,
    ) -> tuple[ClientRecord | None, Grant | None, bool, str | None]:
        """Client, grant and the signing keys record in one round trip; take the
        refresh lease if due.

        The lease is taken only for the grant's own client presenting the
        current token; the caller must `release_refresh_lease` if it refuses.
        The client's TTL is left alone (`rotate_refresh` slides it).
        `jwks_document` as for `load_client_and_grant`.
        """
        args = (presented_hash, now, lease, client_id, lease_holder)

        def before(pipe: t.Any) -> None:
            self._read_client(pipe, client_id, document, jwks_document)
            pipe.get(self.keys.signing_keys())

        # With replica_acks, WAIT here too: a grace-window answer hands out
        # the pending token read from this primary, which a failover could
        # drop if the primary is a demoted one that diverged (J26).
        (*raw_client, raw_keys), reply = self._pipelined_script(
            self._begin_refresh, [self.keys.grant(grant_id)], args, before, wait=True
        )
        client = self._client_read(raw_client, client_id, document, jwks_document)
        if not reply:
            return client, None, False, raw_keys
        raw_grant, leased = reply
        grant = Grant.from_json(grant_id, _text(raw_grant))
        return client, grant, int(leased) == 1, raw_keys

    def _pipelined_script(
        self,
        script: t.Any,
        keys: list[str],
        args: tuple[t.Any, ...],
        before: t.Callable[[t.Any], object],
        *,
        wait: bool = False,
    ) -> tuple[list[t.Any], t.Any]:
        """Commands then one script, in a single round trip: their replies, its reply.

        With `wait` and ``replica_acks``, a WAIT follows the script in the same
        round trip, and too few acknowledgements raise NotReplicatedError.

        EVALSHA is sent by hand: a redis-py Script object inside a pipeline
        costs an extra SCRIPT EXISTS round trip on every execute. The script is
        loaded only when Redis answers NOSCRIPT (after a restart or flush).
        """
        for attempt in range(2):
            pipe = self.redis.pipeline(transaction=False)
            before(pipe)
            pipe.evalsha(script.sha, len(keys), *keys, *args)
            wait_acks = self.replica_acks if wait else 0
            if wait_acks:
                pipe.execute_command(  # type: ignore[no-untyped-call]
                    "WAIT", wait_acks, REPLICA_WAIT_MS
                )
            try:
                replies = pipe.execute()
            except redis.exceptions.NoScriptError:
                if attempt:
                    raise
                self.redis.script_load(script.script)
                continue
            if wait_acks and int(replies.pop()) < wait_acks:
                raise NotReplicatedError(
                    f"fewer than {wait_acks} replicas acknowledged"
                )
            *first, second = replies
            return first, second
        raise AssertionError("unreachable")  # pragma: no cover

    def _replicated_script(
        self,
        script: t.Any,
        keys: list[str],
        args: tuple[t.Any, ...],
        client: ClientInUse | None,
    ) -> t.Any:
        """A one-time change the client is told of (a redemption, a rotation):
        with the client's TTL slide, and with WAIT when ``replica_acks`` is set,
        in one round trip; a plain EVALSHA when neither applies (fakeredis,
        standalone: exactly as before)."""
        if client is None and not self.replica_acks:
            return script(keys=keys, args=list(args))

        def before(pipe: t.Any) -> None:
            if client is not None:
                self._slide(pipe, client)

        _, result = self._pipelined_script(script, keys, args, before, wait=True)
        return result

    def release_refresh_lease(self, grant_id: str, lease_holder: str) -> bool:
        """Free this holder's lease; a lapsed one, now another's, is left alone."""
        released = self._release_lease(
            keys=[self.keys.grant(grant_id)], args=[lease_holder]
        )
        return bool(released)

    def redeem_code(
        self,
        grant_id: str,
        *,
        code_hash: str,
        now: int,
        tolerance: int,
        refresh_hash: str | None,
        ttl: int,
        client: ClientInUse | None = None,
    ) -> RedeemResult:
        """Spend a code (REDEEM_CODE); with `client`, slide that client's TTL in
        the same round trip: a client that got this far has a real login."""
        keys = [self.keys.grant(grant_id)]
        args = (code_hash, now, tolerance, refresh_hash or "", ttl)
        result = self._replicated_script(self._redeem_code, keys, args, client)
        return RedeemResult(_text(result))

    def rotate_refresh(
        self,
        grant_id: str,
        *,
        expected_gen: int,
        new_hash: str,
        now: int,
        pending: str,
        ttl: int,
        upstream: str | None,
        client: ClientInUse | None = None,
        claims: dict[str, t.Any] | None = None,
    ) -> RotateResult:
        """Rotate (ROTATE_REFRESH); with `client`, slide its TTL in the same
        round trip (the caller holds the lease: it presented the current token).

        `claims`, when given, replaces the grant's identity claims in the same
        script (J66): the groups a refresh re-read upstream and the refresh
        token that carries them are stored together or not at all. None keeps
        the stored claims.
        """
        keys = [self.keys.grant(grant_id)]
        encoded = "" if claims is None else claims_json(claims)
        args = (expected_gen, new_hash, now, pending, ttl, upstream or "", encoded)
        result = self._replicated_script(self._rotate_refresh, keys, args, client)
        return RotateResult(_text(result))

    def _slide(self, pipe: t.Any, client: ClientInUse) -> None:
        """Queue the slide of a client in use to its full TTL (0: none at all).

        Registration gives a client only the short unused TTL; a redeemed code
        or a rotated refresh token gives it the full sliding one. A request
        with a made-up code or token slides nothing, so it cannot keep a
        flood's registrations alive.
        """
        key = self.keys.client(client.client_id)
        if client.ttl:
            pipe.expire(key, client.ttl)
        else:
            pipe.persist(key)

    # -- client assertions ----------------------------------------------------
    def spend_assertion(self, client_id: str, jti: str, ttl: int) -> bool:
        """Mark a client assertion's ``jti`` used (SET NX EX); False: a replay.

        One command, so of two workers racing with the same assertion exactly
        one sees True. Both parts are hashed: the key stays short and holds
        nothing a client chose verbatim.
        """
        key = self.keys.assertion_jti(sha256_hex(client_id)[:32], sha256_hex(jti))
        return bool(self.redis.set(key, "1", nx=True, ex=max(1, ttl)))

    # -- signing keys ---------------------------------------------------------
    def load_signing_keys(self) -> str | None:
        raw = self.redis.get(self.keys.signing_keys())
        return t.cast("str | None", raw)

    def create_signing_keys(self, document: str) -> bool:
        """Store ``document`` unless a record exists (SET NX): False if one did.

        NX is what makes racing workers converge: whoever loses adopts the
        winner's keys by reading them back, and nothing ever overwrites keys
        that tokens in flight were signed with.
        """
        return bool(self.redis.set(self.keys.signing_keys(), document, nx=True))

    def replace_signing_keys(self, expected: str, document: str) -> bool:
        """Store ``document`` if the record still equals ``expected``
        (REPLACE_SIGNING_KEYS): a rotation, retirement or reseal is one atomic
        write that never overwrites a change it did not see."""
        keys = [self.keys.signing_keys()]
        return bool(self._replace_signing_keys(keys=keys, args=[expected, document]))


def _text(value: t.Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
