"""The properties every fuzzed request is held to, and the one way to send it.

1. No 5xx but 503 (a retryable outage): anything else is a bug or a crash.
2. No Python traceback in the body.
3. The OAuth endpoints answer every 4xx as RFC 6749 §5.2 does: a JSON body
   with `error`, and `Cache-Control: no-store`.
4. A refused request (4xx, or an error redirect) changes nothing in Redis,
   except the abuse counters and flow traces a refusal is meant to touch, the
   client-document cache, a verified assertion's spent `jti`, and the documented
   revocations (a replayed code or reused refresh token ends its grant; a
   callback consumes its transaction even when the IdP reports an error).
"""

from __future__ import annotations

import json
import typing as t
from dataclasses import dataclass
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import redis
from hypothesis import event
from hypothesis.control import currently_in_test_context

#: Key families a refusal is supposed to write (proxy/store/keys.py): abuse
#: counters, the flow trace (whose failed step is the point of it), and the
#: client-document cache (a fetched document, or a failure remembered, is a
#: cache entry whatever the request's outcome).
COUNTER_FAMILIES = (
    "rate:",
    "authfail:",
    "authblock:",
    "trace:",
    "traces:",
    "doc:",
    "docfail:",
    "doclock:",
    "docforce:",
)

#: Endpoints whose every error is a JSON body with `error` (RFC 6749 §5.2,
#: RFC 7591 §3.2.2, RFC 7009 §2.2.1, RFC 7662 §2.3).
JSON_ERROR_PATHS = (
    "/oauth2/register",
    "/oauth2/token",
    "/oauth2/revoke",
    "/oauth2/introspect",
)
#: Endpoints whose errors are pages or redirects, but still never cached.
NO_STORE_PATHS = (*JSON_ERROR_PATHS, "/oauth2/authorize", "/oauth2/consent")
#: Resource endpoints: a 401 carries a Bearer challenge (RFC 6750 §3).
RESOURCE_PATHS = ("/mcp", "/oauth2/forward-auth")

Snapshot = dict[str, t.Any]
#: Suffix of the snapshot entry that says whether a key has a TTL.
EXPIRES = " (expires)"


def snapshot(client: redis.Redis, prefix: str) -> Snapshot:
    """Every key under the prefix with its value (TTLs ignored: GETEX slides them)."""
    state: Snapshot = {}
    for key in client.scan_iter(match=prefix + "*", count=1000):
        name = key[len(prefix) :]
        if name.startswith(COUNTER_FAMILIES):
            continue
        kind = client.type(key)
        if kind == "string":
            state[name] = _decoded(client.get(key))
        elif kind == "zset":
            state[name] = client.zrange(key, 0, -1, withscores=True)
        elif kind == "hash":
            state[name] = client.hgetall(key)
        elif kind == "set":
            state[name] = sorted(client.smembers(key))
        elif kind == "list":
            state[name] = client.lrange(key, 0, -1)
        elif kind != "none":  # "none": expired between SCAN and TYPE
            state[name] = (kind, client.dump(key))
        if name in state:
            # Whether it expires at all: a refusal may slide a TTL (GETEX),
            # never add or remove one.
            state[name + EXPIRES] = client.ttl(key) != -1
    return state


def _decoded(value: str | None) -> t.Any:
    """A JSON record as its content: the Lua scripts re-encode it with cjson,
    which may reorder keys without changing anything."""
    try:
        return json.loads(value) if value is not None else None
    except ValueError:
        return value


@dataclass
class Fuzzer:
    """Sends one request through the Flask test client and checks it."""

    client: t.Any
    redis: redis.Redis
    prefix: str

    def send(self, method: str, path: str, **kwargs: t.Any) -> t.Any:
        if "headers" in kwargs:
            kwargs["headers"] = {
                name: sendable(value) for name, value in kwargs["headers"].items()
            }
        _settle_stream_releases(self.client)
        before = snapshot(self.redis, self.prefix)
        response = self.client.open(path, method=method, **kwargs)
        body = response.get_data()
        described = f"{method} {path} -> {response.status_code}: {body[:600]!r}"
        check_status(response, described)
        assert b"Traceback" not in body, described
        bare = path.split("?", 1)[0]
        if currently_in_test_context():
            # --hypothesis-show-statistics shows which answers the run reached.
            event(f"{response.status_code} {error_code(response)}")
        check_error_shape(response, bare, method, described)
        if refused(response):
            _settle_stream_releases(self.client)  # its own slot, given back
            after = snapshot(self.redis, self.prefix)
            check_unchanged(before, after, response, bare, described)
        return response


def _settle_stream_releases(client: t.Any) -> None:
    """End the leases released so far, now and from this thread: the worker's
    sender (or the grant's next acquire) would end them later, and a lease a
    request gave back is that request's own write, whenever it lands."""
    state = client.application.extensions.get("proxy")  # the harness' own tests
    streams = state.streams if state is not None else None  # have a bare Flask
    if streams is not None:
        streams.background_releases = False
        streams.send_releases()


def sendable(value: str) -> str:
    """A header value as a server receives it: UTF-8 bytes seen as latin-1
    (WSGI), with the line breaks no HTTP parser would pass on removed."""
    raw = value.encode("utf-8", "surrogatepass").decode("latin-1")
    return raw.replace("\r", "").replace("\n", "")


def check_status(response: t.Any, described: str) -> None:
    status = response.status_code
    assert status < 500 or status == 503, described


def check_error_shape(response: t.Any, path: str, method: str, described: str) -> None:
    status = response.status_code
    if not 400 <= status < 500 or status == 404:
        return
    if path in NO_STORE_PATHS:
        assert response.headers.get("Cache-Control") == "no-store", described
    if path in JSON_ERROR_PATHS and method != "HEAD":
        assert response.mimetype == "application/json", described
        body = response.get_json(silent=True)
        assert isinstance(body, dict), described
        assert isinstance(body.get("error"), str), described
    if path in RESOURCE_PATHS and status == 401:
        assert response.headers.get("WWW-Authenticate", "").startswith("Bearer "), (
            described
        )


def refused(response: t.Any) -> bool:
    """A 4xx, or a redirect that carries an OAuth `error` to the client."""
    if 400 <= response.status_code < 500:
        return True
    if response.status_code in (302, 303) and "Location" in response.headers:
        query = parse_qs(urlsplit(response.headers["Location"]).query)
        return "error" in query
    return False


def error_code(response: t.Any) -> str | None:
    body = response.get_json(silent=True)
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return t.cast(str, body["error"])
    if "Location" in response.headers:
        errors = parse_qs(urlsplit(response.headers["Location"]).query).get("error")
        return errors[0] if errors else None
    return None


def check_unchanged(
    before: Snapshot, after: Snapshot, response: t.Any, path: str, described: str
) -> None:
    """Refused requests leave the store alone, but for the documented exceptions."""
    changed = {
        key for key in before.keys() | after.keys() if before.get(key) != after.get(key)
    }
    for key in changed:
        record = key.removesuffix(EXPIRES)
        old, new = before.get(record), after.get(record)
        if _documented(record, old, new, response, path):
            continue
        raise AssertionError(
            f"a refused request changed {key!r}: "
            f"{_difference(before.get(key), after.get(key))}\n{described}"
        )


def _difference(old: t.Any, new: t.Any) -> str:
    """Only the fields that changed, when both are records."""
    if isinstance(old, dict) and isinstance(new, dict):
        fields = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in fields)
    return f"{old!r} -> {new!r}"


def _documented(key: str, old: t.Any, new: t.Any, response: t.Any, path: str) -> bool:
    # OAuth 2.1 §4.1.3 / §4.3.1: a replayed code or a reused refresh token
    # revokes the grant, and that answer is invalid_grant. Both need a grant
    # whose code was redeemed: an unredeemed one is never ended by a refusal.
    if (
        key.startswith("grant:")
        and new is None
        and path == "/oauth2/token"
        and error_code(response) == "invalid_grant"
    ):
        return isinstance(old, dict) and bool(old.get("code_used_at"))
    # RFC 7523 §3: a verified client assertion is spent (its jti) before the
    # grant is looked at, so a later refusal leaves it spent.
    if key.startswith("jti:") and old is None and path in JSON_ERROR_PATHS:
        return True
    # The callback takes its transaction once, whatever the IdP answered
    # (TAKE_TXN leaves the "used" tombstone; docs/storage-schema.md).
    return (
        key.startswith("txn:")
        and old not in (None, "used")
        and new == "used"
        and path == "/oauth2/callback"
    )
