"""A gunicorn worker killed (SIGKILL) in the middle of logins and refreshes.

Real processes: redis-server, oidc-provider-mock, the proxy under gunicorn with
2 workers. Clients refresh their tokens in a loop (each on a new connection,
as a client after a pause would), and new users log in, while one worker is
SIGKILLed. Then:

- only requests in flight at the kill fail (a connection error), never one
  sent after it; no answer is a 500;
- the arbiter starts a new worker, and every later flow succeeds;
- nothing stored is corrupted: every client whose refresh was cut off retries
  with the token it had. Either the cut request had rotated the grant (the
  grace window hands the same new token back) or it had not (a normal
  rotation): the client always ends with a working refresh token, and its
  grant is neither lost nor revoked as reuse.

Figures (requests, in flight at the kill, failures, retries, the new worker)
are printed; correctness only is asserted.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import threading
import time
from dataclasses import dataclass
from dataclasses import field

import requests

from ..e2e.conftest import require_redis_server
from .fault_stack import FaultStack
from .fault_stack import fault_stack
from .load import Figures
from .recorded import record

REFRESHERS = 12
LOGINS_IN_PARALLEL = 2
#: The stream runs this long; the kill comes after KILL_AFTER_SECONDS.
STREAM_SECONDS = 10.0
KILL_AFTER_SECONDS = 3.0
#: A cut-off refresh is retried until it succeeds, for at most this long (the
#: per-grant upstream lease a killed request held must lapse first).
RETRY_LIMIT_SECONDS = 40.0
#: Far above this load: the test is about the kill, not the limits.
GENEROUS = "100000/minute"
OVERRIDES = {
    f"RATE_LIMIT_{name}": GENEROUS
    for name in ("TOKEN", "REGISTER", "AUTHORIZE", "CONSENT", "CALLBACK")
} | {
    # The refresh lease a killed request held lapses after this + 5 s (15 s
    # with the default 10): the retry waiting on it is most of the test's
    # time, and the local IdP answers in milliseconds.
    "UPSTREAM_TIMEOUT_SECONDS": "5",
}


@dataclass
class Attempt:
    kind: str
    started: float
    ended: float
    outcome: str  # "ok", "connection_error", or the HTTP status and error


@dataclass
class Log:
    attempts: list[Attempt] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, attempt: Attempt) -> None:
        with self.lock:
            self.attempts.append(attempt)


#: A connection the killed worker cut: before the response, or mid-body (the
#: headers were out, the body was not: requests raises ChunkedEncodingError).
CUT = (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)


def _refresh_once(
    stack: FaultStack, client_id: str, token: str, log: Log
) -> tuple[str, str]:
    """One refresh attempt on a new connection: (outcome, new token or old)."""
    started = time.monotonic()
    try:
        response = stack.refresh(client_id, token)
    except CUT:
        log.add(Attempt("refresh", started, time.monotonic(), "connection_error"))
        return "connection_error", token
    except requests.Timeout:
        log.add(Attempt("refresh", started, time.monotonic(), "timeout"))
        return "timeout", token
    ended = time.monotonic()
    if response.status_code == 200:
        log.add(Attempt("refresh", started, ended, "ok"))
        return "ok", str(response.json()["refresh_token"])
    error = response.json().get("error", "") if response.content else ""
    outcome = f"{response.status_code} {error}"
    log.add(Attempt("refresh", started, ended, outcome))
    return outcome, token


def _refresh_until_done(
    stack: FaultStack, client_id: str, token: str, log: Log
) -> tuple[bool, str]:
    """Refresh, retrying what a client retries (cut connection, 503), with the
    same token; (succeeded, the token to use next)."""
    deadline = time.monotonic() + RETRY_LIMIT_SECONDS
    while time.monotonic() < deadline:
        outcome, token_next = _refresh_once(stack, client_id, token, log)
        if outcome == "ok":
            return True, token_next
        if outcome != "connection_error" and not outcome.startswith("503"):
            return False, token
        time.sleep(0.5 if outcome.startswith("503") else 0.0)
    return False, token


def _login(stack: FaultStack, user: str, log: Log) -> None:
    started = time.monotonic()
    try:
        stack.login(user)
        outcome = "ok"
    except CUT:
        outcome = "connection_error"
    except requests.Timeout as exc:
        outcome = f"timeout {exc}"[:160]
    except AssertionError as exc:
        outcome = "failed: " + str(exc).splitlines()[0][:120]
    log.add(Attempt("login", started, time.monotonic(), outcome))


def _replacement(stack: FaultStack, killed: int, limit: float = 30.0) -> list[int]:
    """The worker pids once the arbiter has replaced the killed one."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        workers = [p for p in stack.proxy.worker_pids() if p != stack.proxy.popen.pid]
        if killed not in workers and len(workers) == 2:
            return workers
        time.sleep(0.1)
    raise AssertionError(f"the arbiter did not replace worker {killed}")


def test_a_worker_killed_mid_flow() -> None:
    require_redis_server()
    with fault_stack(overrides=OVERRIDES) as stack:
        users = [stack.login(f"user{i}@example.com") for i in range(REFRESHERS)]
        tokens = {u["client_id"]: u["refresh_token"] for u in users}
        log = Log()
        stop = threading.Event()
        unfinished: list[str] = []

        def refresher(client_id: str) -> None:
            while not stop.is_set():
                done, tokens[client_id] = _refresh_until_done(
                    stack, client_id, tokens[client_id], log
                )
                if not done:
                    unfinished.append(client_id)
                    return

        def login_loop(index: int) -> None:
            for n in range(10_000):
                if stop.is_set():
                    return
                _login(stack, f"stream{index}-{n}@example.com", log)

        threads = [threading.Thread(target=refresher, args=(c,)) for c in tokens]
        threads += [
            threading.Thread(target=login_loop, args=(i,))
            for i in range(LOGINS_IN_PARALLEL)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(KILL_AFTER_SECONDS)
        workers_before = [
            p for p in stack.proxy.worker_pids() if p != stack.proxy.popen.pid
        ]
        victim = workers_before[0]
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        workers_after = _replacement(stack, victim)
        replaced_at = time.monotonic()
        time.sleep(max(0.0, STREAM_SECONDS - (time.monotonic() - started)))
        stop.set()
        for thread in threads:
            thread.join(timeout=RETRY_LIMIT_SECONDS + 30)

        # After the stream: every client refreshes once more, and a new user
        # logs in; each grant is still stored.
        final = {
            client_id: _refresh_until_done(stack, client_id, token, log)[0]
            for client_id, token in tokens.items()
        }
        after_login = stack.login("after@example.com")
        log_text = stack.proxy.output(max_chars=10**9)

    attempts = log.attempts
    outcomes = collections.Counter(f"{a.kind} {a.outcome}" for a in attempts)
    in_flight = [a for a in attempts if a.started <= killed_at <= a.ended]
    failed = [a for a in attempts if a.outcome != "ok"]
    cut = [a for a in failed if a.outcome == "connection_error"]
    after_replacement = [a for a in attempts if a.started > replaced_at]
    figures = Figures("worker_killed")
    figures.model = "gunicorn 2 workers, SIGKILL to one"
    figures.crowd = {
        "refreshers": REFRESHERS,
        "login_loops": LOGINS_IN_PARALLEL,
        "attempts": len(attempts),
        "outcomes": dict(outcomes),
        "in_flight_at_kill": len(in_flight),
        "cut_connections": len(cut),
        "cut_sent_after_the_signal": sum(a.started > killed_at for a in cut),
        "attempts_after_replacement": len(after_replacement),
        "failed_after_replacement": sum(a.outcome != "ok" for a in after_replacement),
        "workers_before": workers_before,
        "killed": victim,
        "workers_after": workers_after,
        "replaced_after_s": round(replaced_at - killed_at, 2),
        "final_refresh_ok": sum(final.values()),
        # A retry whose grant's lease the killed request held waits for it.
        "slowest_refresh_after_kill_s": round(
            max(
                (a.ended - a.started for a in attempts if a.started > killed_at),
                default=0.0,
            ),
            2,
        ),
        "not_ok": [
            f"{a.kind} {a.outcome} sent {a.started - killed_at:+.2f} s from the "
            f"kill, ended {a.ended - killed_at:+.2f} s"
            for a in failed
        ],
    }
    record(figures)
    print("\n[worker_killed] " + json.dumps(figures.crowd, indent=1))

    assert not unfinished, f"clients whose refresh never succeeded: {unfinished}"
    assert all(final.values()), final
    assert after_login["access_token"]
    # Only requests in flight at the kill were cut: none sent once the victim
    # was gone (reaped by the arbiter; the signal itself takes a moment).
    assert all(a.started < replaced_at for a in cut), cut
    # Every other non-ok answer was a retryable 503 (a lapsing lease), no 500.
    others = [a for a in failed if a.outcome != "connection_error"]
    assert all(a.outcome.startswith("503 ") for a in others), others[:5]
    assert not [a for a in after_replacement if a.outcome == "connection_error"]
    assert "Traceback" not in log_text, log_text[-3000:]
