"""Redis at maxmemory under noeviction: refused cleanly, recovered by itself.

Real processes: a redis-server with a small maxmemory and noeviction,
oidc-provider-mock, the proxy under gunicorn with 2 workers. A user logs in
first. Then Redis is filled until it refuses writes, and:

- /readyz is 503 and names the cause (out_of_memory);
- registration, login (authorize through callback) and token requests answer
  503 temporarily_unavailable with Retry-After, or a 4xx; never a 500, and
  the proxy logs no traceback;
- once the filler's keys are deleted, with no restart, /readyz is 200, a new
  login works end to end, and the user who logged in before refreshes.

Figures (status counts while full, Redis memory) are printed; correctness only
is asserted.
"""

from __future__ import annotations

import collections
import json
import re
import secrets
import time
from urllib.parse import urlencode

import pytest
import requests

from proxy.oauth.pkce import s256

from ..e2e.conftest import require_redis_server
from ..e2e.mcp_oauth_client import BrowserFlowError
from ..e2e.mcp_oauth_client import run_browser_flow
from ..redis_faults import FULL_MAXMEMORY_ARGS
from ..redis_faults import fill_to_maxmemory
from ..redis_faults import free_memory
from ..redis_faults import used_memory
from .fault_stack import REALISTIC_REGISTRATION
from .fault_stack import FaultStack
from .fault_stack import fault_stack
from .load import Figures
from .recorded import record

ATTEMPTS = 20
#: How long the stack may take to notice Redis has room again (a bound, not a figure).
RECOVERY_LIMIT_SECONDS = 30.0


@pytest.mark.parametrize("rate_limits", ["on", "off"])
def test_redis_full_is_503_then_recovers_by_itself(rate_limits: str) -> None:
    """With rate limits on, the first write refused is the request's rate
    bucket; with them off, requests reach the endpoints' own writes (the
    refresh lease, the transaction, the client record)."""
    require_redis_server()
    overrides = {"RATE_LIMITS_ENABLED": "true" if rate_limits == "on" else "false"}
    with fault_stack(redis_args=FULL_MAXMEMORY_ARGS, overrides=overrides) as stack:
        before = stack.login("before@example.com")
        registered_before = requests.post(
            f"{stack.proxy_url}/oauth2/register",
            json=REALISTIC_REGISTRATION,
            timeout=10,
        ).json()["client_id"]
        client = stack.redis_client()
        fill_to_maxmemory(client)
        log_offset = len(stack.proxy.output(max_chars=10**9))
        memory_full = used_memory(client)

        statuses: dict[str, collections.Counter[int]] = collections.defaultdict(
            collections.Counter
        )
        problems: list[str] = []
        ready = stack.readyz()
        readyz_body = ready.json()
        for _ in range(ATTEMPTS):
            statuses["readyz"][stack.readyz().status_code] += 1
            registered = requests.post(
                f"{stack.proxy_url}/oauth2/register",
                json=REALISTIC_REGISTRATION,
                timeout=10,
            )
            statuses["register"][registered.status_code] += 1
            problems += _check_refusal("register", registered)
            refreshed = stack.refresh(before["client_id"], before["refresh_token"])
            statuses["refresh"][refreshed.status_code] += 1
            problems += _check_refusal("refresh", refreshed)
            if refreshed.status_code == 200:
                before["refresh_token"] = refreshed.json()["refresh_token"]
        for _ in range(3):
            # The browser leg, for a client registered before Redis filled up.
            url = authorize_url(stack, registered_before)
            try:
                run_browser_flow(url, "during@example.com")
                statuses["login"][200] += 1
            except BrowserFlowError as exc:
                text = str(exc)
                final = re.search(r"unexpected response (\d{3})", text)
                statuses["login"][int(final.group(1)) if final else 0] += 1
                if "=> 500" in text or "Traceback" in text:
                    problems.append(f"login: {text[:300]}")
        log_while_full = stack.proxy.output(max_chars=10**9)[log_offset:]

        freed = free_memory(client)
        memory_freed = used_memory(client)
        started = time.monotonic()
        while stack.readyz().status_code != 200:
            assert time.monotonic() - started < RECOVERY_LIMIT_SECONDS, "no recovery"
            time.sleep(0.2)
        recovered_after = time.monotonic() - started
        after = stack.login("after@example.com")
        refreshed_after = stack.refresh(before["client_id"], before["refresh_token"])
        result = Figures(f"redis_full_rate_limits_{rate_limits}")
        result.model = "gunicorn 2 workers, redis noeviction"
        result.crowd = {
            "rate_limits": rate_limits,
            "redis_used_memory_full": memory_full,
            "redis_used_memory_freed": memory_freed,
            "filler_keys_freed": freed,
            "readyz_while_full": readyz_body,
            "statuses_while_full": {k: dict(v) for k, v in statuses.items()},
            "ready_again_after_s": round(recovered_after, 2),
            "refresh_of_earlier_user_after": refreshed_after.status_code,
        }
        record(result)
        print(f"\n[{result.scenario}] " + json.dumps(result.crowd, indent=1))

    assert ready.status_code == 503
    assert readyz_body["cause"] == "out_of_memory"
    assert statuses["readyz"] == {503: ATTEMPTS}
    assert not problems, problems[:5]
    for name in ("register", "refresh", "login"):
        assert 500 not in statuses[name], (name, statuses[name])
    assert "Traceback" not in log_while_full, log_while_full[-3000:]
    assert after["access_token"]
    assert refreshed_after.status_code == 200, refreshed_after.text


def _check_refusal(name: str, response: requests.Response) -> list[str]:
    """A refusal is 503 temporarily_unavailable with Retry-After, or a 4xx."""
    status = response.status_code
    if status < 400 or (400 <= status < 500 and status != 429):
        return []
    if status in (429, 503):
        body = response.json()
        if body.get("error") != "temporarily_unavailable":
            return [f"{name}: {status} {body}"]
        if not response.headers.get("Retry-After"):
            return [f"{name}: {status} without Retry-After"]
        return []
    return [f"{name}: {status} {response.text[:200]}"]


def authorize_url(stack: FaultStack, client_id: str) -> str:
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REALISTIC_REGISTRATION["redirect_uris"][0],
            "code_challenge": s256(secrets.token_urlsafe(48)),
            "code_challenge_method": "S256",
            "state": "st",
            "resource": stack.resource,
        }
    )
    return f"{stack.proxy_url}/oauth2/authorize?{query}"
