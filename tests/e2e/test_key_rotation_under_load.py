"""Key rotation under load: the proxy keeps answering while its keys change.

Real processes: redis-server and the proxy under gunicorn with 2 workers, the
upstream a real OIDC provider (oidc-provider-mock). One grant is obtained
through the full browser flow, then a loop checks its access token at
``/oauth2/forward-auth`` (what a gateway asks) and refreshes it, without a
pause, while

1. ``python -m proxy keys rotate --overlap 4`` publishes a next key that signs
   four seconds later (no worker restarts), and then
2. the proxy restarts with a new PROXY_SECRET_KEY and the old one in
   PROXY_SECRET_KEY_PREVIOUS.

Throughout: no 401 and no 500, only requests in flight during the restart go
unanswered (the restart is gunicorn's quick shutdown, so a refresh cut off
mid-way leaves its upstream lease to lapse, and the next one waits for it, as
after a killed worker), tokens from after the overlap carry the new
kid, tokens the old key signed keep verifying (it retires only an access-token
lifetime after the switch), and the grant and the signing keys are resealed
under the new secret.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import typing as t
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
import requests

from proxy.keys.key_document import SEAL_CONTEXT
from proxy.keys.key_document import parse_document
from proxy.keys.keyring import Keyring
from support.processes import REPO_ROOT
from support.processes import ManagedProcess
from support.processes import free_port
from support.processes import start_proxy
from support.processes import start_redis

from .conftest import require_redis_server
from .gateway_stack import scripted_tokens
from .stack import proxy_env

OVERLAP_SECONDS = 4
#: Longer than a refresh may wait on the upstream lease a request cut off by
#: the restart held (UPSTREAM_TIMEOUT_SECONDS 10 + 5 of slack + 2): a worker
#: stopped mid-refresh leaves it to lapse, and the next refresh takes it over.
REFRESH_TIMEOUT_SECONDS = 30
#: How long before the restart began a request cut off by it may have been
#: sent (an answer takes milliseconds; one waiting longer was stuck before).
IN_FLIGHT_SECONDS = 2.0
#: How long after the restart both kinds of request must have been answered.
ANSWERED_AFTER_RESTART_WITHIN_SECONDS = 30.0
USER = "rotation-e2e@example.com"


@dataclass
class Sample:
    at: float  # when the request began (monotonic)
    kind: str  # "check" (forward-auth) or "refresh"
    status: int  # 0: no answer (the proxy was restarting)
    kid: str | None = None
    ended: float = 0.0


def _kid(access_token: str) -> str:
    header = access_token.split(".")[0]
    decoded = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
    return str(json.loads(decoded)["kid"])


class Load:
    """Checks the current access token, the first one, and refreshes, in a loop."""

    def __init__(self, proxy_url: str, client_id: str, tokens: dict[str, t.Any]):
        self.proxy_url = proxy_url
        self.client_id = client_id
        self.tokens = tokens
        self.first_access_token = tokens["access_token"]
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._check_loop, daemon=True),
            threading.Thread(target=self._refresh_loop, daemon=True),
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=REFRESH_TIMEOUT_SECONDS + 5)

    def current(self) -> dict[str, t.Any]:
        with self._lock:
            return dict(self.tokens)

    def _record(
        self, began: float, kind: str, status: int, kid: str | None = None
    ) -> None:
        self.samples.append(Sample(began, kind, status, kid, time.monotonic()))

    def answered_since(self, since: float) -> set[str]:
        """The kinds of request that began after ``since`` and got an answer."""
        return {s.kind for s in list(self.samples) if s.at > since and s.status}

    def _check_loop(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            for token in (self.current()["access_token"], self.first_access_token):
                began = time.monotonic()
                try:
                    response = session.get(
                        f"{self.proxy_url}/oauth2/forward-auth",
                        headers={"Authorization": f"Bearer {token}"},
                        timeout=5,
                    )
                except (requests.ConnectionError, requests.Timeout):
                    self._record(began, "check", 0)
                    session = requests.Session()
                    time.sleep(0.05)
                    continue
                self._record(began, "check", response.status_code, _kid(token))

    def _refresh_loop(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            current = self.current()
            began = time.monotonic()
            try:
                response = session.post(
                    f"{self.proxy_url}/oauth2/token",
                    data={
                        "grant_type": "refresh_token",
                        "refresh_token": current["refresh_token"],
                        "client_id": self.client_id,
                    },
                    timeout=REFRESH_TIMEOUT_SECONDS,
                )
            except (requests.ConnectionError, requests.Timeout):
                self._record(began, "refresh", 0)
                session = requests.Session()
                time.sleep(0.05)
                continue
            kid = None
            if response.status_code == 200:
                body = response.json()
                kid = _kid(body["access_token"])
                with self._lock:
                    self.tokens = body
            self._record(began, "refresh", response.status_code, kid)
            time.sleep(0.2)


@pytest.fixture
def redis_server() -> Iterator[ManagedProcess]:
    require_redis_server()
    server = start_redis()
    try:
        yield server
    finally:
        server.close()


def _keys_cli(env: dict[str, str], *argv: str) -> str:
    """`python -m proxy keys ...` as an operator runs it, from the repository."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PROXY_", "REDIS_", "SIGNING_", "ACCESS_"))
    }
    done = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "proxy", "keys", *argv],
        env={**inherited, **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_rotation_and_a_secret_change_under_load(
    redis_server: ManagedProcess, idp_url: str
) -> None:
    started = time.monotonic()
    port = free_port()
    proxy_url = f"http://127.0.0.1:{port}"
    old_secret, new_secret = secrets.token_hex(32), secrets.token_hex(32)
    prefix = f"rot-{uuid.uuid4().hex[:8]}:"
    shared = {
        "REDIS_KEY_PREFIX": prefix,
        "ACCESS_TOKEN_TTL_SECONDS": "60",
        # The loop is far busier than any one grant should be.
        "RATE_LIMITS_ENABLED": "false",
    }
    env = proxy_env(
        public_url=proxy_url,
        idp_url=idp_url,
        audience=f"{proxy_url}/mcp",
        redis_url=redis_server.url,
        overrides={**shared, "PROXY_SECRET_KEY": old_secret},
    )
    proxy = start_proxy(env, port=port, workers=2)
    try:
        tokens = scripted_tokens(proxy_url, f"{proxy_url}/mcp", USER)
        client_id = tokens.pop("client_id")
        old_kid = _kid(tokens["access_token"])
        cli_env = {
            "REDIS_URL": redis_server.url,
            "PROXY_SECRET_KEY": old_secret,
            "AUDIT_LOG": "false",
            **shared,
        }
        with Load(proxy_url, client_id, tokens) as load:
            time.sleep(1.5)
            out = _keys_cli(cli_env, "rotate", "--overlap", str(OVERLAP_SECONDS))
            rotated_at = time.monotonic()
            new_kid = out.split("published key ", 1)[1].split()[0]
            assert new_kid != old_kid
            # The overlap runs out; the workers switch without a restart.
            time.sleep(OVERLAP_SECONDS + 2)
            assert _kid(load.current()["access_token"]) == new_kid
            listing = _keys_cli(cli_env, "list")
            assert old_kid in listing
            assert "verifying" in listing
            # Restart with a new secret; the old one becomes "previous".
            restart_began = time.monotonic()
            proxy.close()
            env = {
                **env,
                "PROXY_SECRET_KEY": new_secret,
                "PROXY_SECRET_KEY_PREVIOUS": old_secret,
            }
            proxy = start_proxy(env, port=port, workers=2)
            restarted_at = time.monotonic()
            deadline = restarted_at + ANSWERED_AFTER_RESTART_WITHIN_SECONDS
            while time.monotonic() < deadline:
                if load.answered_since(restarted_at) == {"check", "refresh"}:
                    break
                time.sleep(0.2)
            time.sleep(1)
        samples = list(load.samples)
        # Nothing the rotation or the secret change caused was refused.
        statuses = {s.status for s in samples}
        assert 401 not in statuses, _summary(samples)
        assert not any(s.status >= 500 for s in samples), _summary(samples)
        assert statuses <= {0, 200}, _summary(samples)
        # Only requests in flight during the restart went unanswered.
        unanswered = [s for s in samples if s.status == 0]
        assert all(
            restart_began - IN_FLIGHT_SECONDS <= s.at <= restarted_at
            and s.ended >= restart_began
            for s in unanswered
        ), _summary(samples)
        # Tokens refreshed after the overlap carry the new kid; before the
        # rotation the old one.
        refreshed = [s for s in samples if s.kind == "refresh" and s.kid]
        assert {s.kid for s in refreshed if s.at < rotated_at} == {old_kid}
        after = [s for s in refreshed if s.at > rotated_at + OVERLAP_SECONDS + 1]
        assert after
        assert {s.kid for s in after} == {new_kid}
        # The first token (old kid) verified all along, after the restart too.
        old_checks = [s for s in samples if s.kind == "check" and s.kid == old_kid]
        assert any(s.at > restarted_at for s in old_checks)
        assert {s.status for s in old_checks} <= {0, 200}
        after_restart = [s for s in samples if s.at > restarted_at and s.status]
        assert {s.kind for s in after_restart} == {"check", "refresh"}
        _assert_resealed(redis_server.url, prefix, new_secret, load.current())
        listing = _keys_cli({**cli_env, "PROXY_SECRET_KEY": new_secret}, "list")
        assert listing.count(" current") == 2, listing
    except BaseException:
        proxy.dump()
        raise
    finally:
        proxy.close()
    slowest = max(
        (s.ended - s.at for s in samples if s.ended > restart_began), default=0.0
    )
    print(
        f"\n{len(samples)} requests, {time.monotonic() - started:.1f} s, "
        f"slowest from the restart on {slowest:.2f} s"
    )


def _assert_resealed(
    url: str, prefix: str, secret_hex: str, tokens: dict[str, t.Any]
) -> None:
    """The grant and the signing keys open with the new secret alone."""
    new = Keyring(bytes.fromhex(secret_hex))
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        keys_raw = t.cast(str, client.get(f"{prefix}keys"))
        for entry in parse_document(keys_raw):
            assert new.open(entry.sealed, context=SEAL_CONTEXT)
        grant_id = tokens["refresh_token"].split(".")[0]
        grant_key = f"{prefix}grant:{{{grant_id}}}"
        grant = json.loads(t.cast(str, client.get(grant_key)))
        assert new.open(grant["upstream"], context=grant_key)
    finally:
        client.close()


def _summary(samples: list[Sample]) -> str:
    counts: dict[tuple[str, int], int] = {}
    for sample in samples:
        counts[(sample.kind, sample.status)] = (
            counts.get((sample.kind, sample.status), 0) + 1
        )
    return f"(kind, status) counts: {counts}"
