"""The synthetic clients: complete OAuth flows and per-endpoint loops (aiohttp).

Every client is bounded in number and time and talks to 127.0.0.1 only.
Redirects are followed by hand and cookies are kept per "browser" (one dict
per flow), so each step is timed on its own and no cookie policy of the HTTP
library decides what the proxy sees.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import time
import typing as t
from collections import defaultdict
from collections.abc import Awaitable
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from urllib.parse import parse_qs
from urllib.parse import urljoin
from urllib.parse import urlsplit

import aiohttp

from support.client_assertions import assertion_form
from support.client_assertions import claims_for
from support.client_assertions import sign

REDIRECT_URI = "http://127.0.0.1:9/callback"
MCP_ACCEPT = "application/json, text/event-stream"
_HIDDEN = re.compile(r'name="([a-z_]+)" value="([^"]*)"')


class FlowError(RuntimeError):
    """A step answered something the flow cannot continue from."""


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class Recorder:
    """Latencies (seconds) and error counts per step or endpoint name."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    error_samples: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.latencies[name].append(seconds)

    def fail(self, name: str, detail: str) -> None:
        self.errors[name] += 1
        self.error_samples.setdefault(name, detail[:300])


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Answer:
    status: int
    headers: t.Any
    body: bytes

    def json(self) -> t.Any:
        return json.loads(self.body)

    def location(self, base: str) -> str:
        return urljoin(base, self.headers["Location"])


class Browser:
    """One user agent: cookies per host:port, sent and stored by hand."""

    def __init__(self) -> None:
        self.jars: dict[str, dict[str, str]] = defaultdict(dict)

    def header(self, url: str) -> dict[str, str]:
        jar = self.jars[urlsplit(url).netloc]
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())} if jar else {}

    def store(self, url: str, headers: t.Any) -> None:
        jar = self.jars[urlsplit(url).netloc]
        for line in headers.getall("Set-Cookie", []):
            pair, _, attrs = line.partition(";")
            name, _, value = pair.strip().partition("=")
            lowered = attrs.lower()
            if (
                not value
                or "max-age=0" in lowered
                or "expires=thu, 01 jan 1970" in lowered
            ):
                jar.pop(name, None)
            else:
                jar[name] = value


async def call(
    session: aiohttp.ClientSession,
    rec: Recorder,
    name: str,
    method: str,
    url: str,
    *,
    browser: Browser | None = None,
    expect: tuple[int, ...] = (200,),
    **kwargs: t.Any,
) -> Answer:
    headers = dict(kwargs.pop("headers", {}) or {})
    if browser is not None:
        headers.update(browser.header(url))
    start = time.perf_counter()
    try:
        async with session.request(
            method, url, headers=headers, allow_redirects=False, **kwargs
        ) as response:
            body = await response.read()
            answer = Answer(response.status, response.headers, body)
    except (TimeoutError, aiohttp.ClientError) as exc:
        rec.fail(name, f"{type(exc).__name__}: {exc}")
        raise FlowError(f"{name}: {exc}") from exc
    if browser is not None:
        browser.store(url, answer.headers)
    if answer.status not in expect:
        rec.fail(name, f"HTTP {answer.status}: {body[:200]!r}")
        raise FlowError(f"{name}: HTTP {answer.status}")
    rec.add(name, time.perf_counter() - start)
    return answer


def registration_body() -> dict[str, t.Any]:
    return {
        "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "client_name": "bench",
    }


def authorize_params(
    client_id: str, challenge: str, resource: str, scope: str | None
) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "state": secrets.token_urlsafe(12),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "resource": resource,
    }
    if scope:
        params["scope"] = scope
    return params


@dataclass(frozen=True)
class FlowClient:
    """Who runs a complete flow: how it gets its client id, how it authenticates.

    With no ``client_id`` the flow registers a public client first (DCR, the
    ``register`` step); with one, the id is a URL (CIMD) and there is nothing
    to register. With a ``key`` every token request carries a fresh
    ``private_key_jwt`` assertion (RFC 7523 §2.2), signed RS256 with it;
    without one the client is public and sends only its ``client_id``.
    """

    kind: str  # "dcr" | "cimd" | "private_key_jwt"
    client_id: str | None = None
    key: t.Any = None

    async def identify(
        self, session: aiohttp.ClientSession, rec: Recorder, target: Target
    ) -> str:
        if self.client_id is not None:
            return self.client_id
        answer = await call(
            session,
            rec,
            "register",
            "POST",
            target.base + target.register_path,
            json=registration_body(),
            expect=(201, 200),
        )
        return str(answer.json()["client_id"])

    def authentication(self, client_id: str, token_url: str) -> dict[str, str]:
        """The token request's client fields: a new assertion (new jti) each time."""
        if self.key is None:
            return {"client_id": client_id}
        assertion = sign(claims_for(client_id, token_url), self.key)
        return assertion_form(assertion, client_id=client_id)


#: A public client registered by DCR in each flow, as Cursor or mcp-remote do.
DCR = FlowClient("dcr")


@dataclass
class Target:
    """Where a flow runs (our proxy or the peer, and their paths), and as whom."""

    kind: str  # "proxy" | "peer"
    base: str
    resource: str
    scope: str | None
    mcp_url: str | None
    register_path: str = "/oauth2/register"
    authorize_path: str = "/oauth2/authorize"
    token_path: str = "/oauth2/token"
    client: FlowClient = DCR


@dataclass
class FlowResult:
    tokens: dict[str, t.Any]
    refreshed: dict[str, t.Any]
    client_id: str


MCP_PROTOCOL_VERSION = "2025-06-18"
MCP_INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": MCP_PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "bench", "version": "1"},
    },
}
MCP_INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
#: tools/call of the demo backend's `echo` tool.
MCP_ECHO_CALL = {
    "jsonrpc": "2.0",
    "id": 2,
    "method": "tools/call",
    "params": {"name": "echo", "arguments": {"text": "hello"}},
}


async def mcp_open(
    session: aiohttp.ClientSession,
    rec: Recorder,
    url: str,
    headers: dict[str, str],
    *,
    names: tuple[str, str] = ("init", "note"),
) -> dict[str, str]:
    """initialize + notifications/initialized (recorded under ``names``); returns
    ``headers`` plus the session id and protocol version for the next requests."""
    answer = await call(
        session, rec, names[0], "POST", url, json=MCP_INITIALIZE, headers=headers
    )
    out = dict(headers)
    sid = answer.headers.get("mcp-session-id")
    if sid:
        out["mcp-session-id"] = sid
    out["mcp-protocol-version"] = MCP_PROTOCOL_VERSION
    await call(
        session,
        rec,
        names[1],
        "POST",
        url,
        json=MCP_INITIALIZED,
        headers=out,
        expect=(200, 202),
    )
    return out


async def mcp_session(
    session: aiohttp.ClientSession,
    rec: Recorder,
    url: str,
    access_token: str,
    prefix: str = "mcp",
) -> None:
    """initialize, notifications/initialized, tools/call echo: one MCP call."""
    auth = {"Authorization": f"Bearer {access_token}", "Accept": MCP_ACCEPT}
    names = (f"{prefix}_initialize", f"{prefix}_initialized")
    headers = await mcp_open(session, rec, url, auth, names=names)
    answer = await call(
        session,
        rec,
        f"{prefix}_call",
        "POST",
        url,
        json=MCP_ECHO_CALL,
        headers=headers,
    )
    if b"hello" not in answer.body:
        rec.fail(f"{prefix}_call", f"unexpected body {answer.body[:200]!r}")
        raise FlowError("mcp call did not echo")


async def complete_flow(
    session: aiohttp.ClientSession,
    rec: Recorder,
    target: Target,
    user: str,
    *,
    with_mcp: bool,
) -> FlowResult:
    """[register,] authorize, consent, upstream login, callback, token, refresh
    [, MCP]; `target.client` says whether it registers and how it authenticates."""
    browser = Browser()
    verifier, challenge = pkce_pair()
    client = target.client
    client_id = await client.identify(session, rec, target)
    params = authorize_params(client_id, challenge, target.resource, target.scope)
    consent = _proxy_consent if target.kind == "proxy" else _peer_consent
    upstream_url = await consent(session, rec, browser, target, params)
    code = await _upstream_login(session, rec, browser, upstream_url, user)
    token_url = target.base + target.token_path
    answer = await call(
        session,
        rec,
        "token_code",
        "POST",
        token_url,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": REDIRECT_URI,
            "resource": target.resource,
            **client.authentication(client_id, token_url),
        },
    )
    tokens = answer.json()
    answer = await call(
        session,
        rec,
        "token_refresh",
        "POST",
        token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            **client.authentication(client_id, token_url),
        },
    )
    refreshed = answer.json()
    if with_mcp and target.mcp_url:
        await mcp_session(session, rec, target.mcp_url, refreshed["access_token"])
    return FlowResult(tokens=tokens, refreshed=refreshed, client_id=client_id)


async def _proxy_consent(
    session: aiohttp.ClientSession,
    rec: Recorder,
    browser: Browser,
    target: Target,
    params: dict[str, str],
) -> str:
    """Our authorize answers the consent page itself."""
    url = target.base + target.authorize_path
    page = await call(
        session, rec, "authorize", "GET", url, params=params, browser=browser
    )
    return await _approve(
        session,
        rec,
        browser,
        page,
        target.base + "/oauth2/consent",
        hidden=("request", "csrf_token"),
        extra={"action": "approve"},
    )


async def _peer_consent(
    session: aiohttp.ClientSession,
    rec: Recorder,
    browser: Browser,
    target: Target,
    params: dict[str, str],
) -> str:
    """FastMCP's authorize redirects to a separate consent page (a GET of its own)."""
    url = target.base + target.authorize_path
    answer = await call(
        session,
        rec,
        "authorize",
        "GET",
        url,
        params=params,
        browser=browser,
        expect=(302, 303, 307),
    )
    page_url = answer.location(url)
    page = await call(session, rec, "consent_page", "GET", page_url, browser=browser)
    return await _approve(
        session,
        rec,
        browser,
        page,
        page_url,
        hidden=("txn_id", "csrf_token"),
        extra={"submit": "true", "action": "approve"},
    )


async def _approve(
    session: aiohttp.ClientSession,
    rec: Recorder,
    browser: Browser,
    page: Answer,
    url: str,
    *,
    hidden: tuple[str, ...],
    extra: dict[str, str],
) -> str:
    """Approve a consent page: POST its ``hidden`` fields and ``extra`` to ``url``;
    returns where the answer redirects (the upstream's authorize URL)."""
    fields = dict(_HIDDEN.findall(page.body.decode()))
    form = {name: fields[name] for name in hidden} | extra
    answer = await call(
        session,
        rec,
        "consent",
        "POST",
        url,
        data=form,
        browser=browser,
        expect=(302, 303),
    )
    return answer.location(url)


async def _upstream_login(
    session: aiohttp.ClientSession,
    rec: Recorder,
    browser: Browser,
    upstream_url: str,
    user: str,
) -> str:
    """Log in at the upstream IdP and follow its callback: the code for the client."""
    answer = await call(
        session,
        rec,
        "upstream_login",
        "POST",
        upstream_url,
        data={"sub": user},
        browser=browser,
        expect=(302, 303),
    )
    callback_url = answer.location(upstream_url)
    answer = await call(
        session,
        rec,
        "callback",
        "GET",
        callback_url,
        browser=browser,
        expect=(302, 303, 307),
    )
    back = answer.location(callback_url)
    query = parse_qs(urlsplit(back).query)
    if "code" not in query:
        rec.fail("callback", f"no code in {back[:200]}")
        raise FlowError("callback returned no code")
    return query["code"][0]


@dataclass
class RunStats:
    completed: int
    failed: int
    elapsed: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.completed / self.elapsed if self.elapsed else 0.0


async def run_flows(
    session: aiohttp.ClientSession,
    rec: Recorder,
    target: Target,
    *,
    clients: int,
    duration: float,
    with_mcp: bool,
    max_flows: int | None = None,
) -> tuple[RunStats, list[FlowResult]]:
    """`clients` concurrent users, each running complete flows until the deadline."""
    deadline = time.perf_counter() + duration
    results: list[FlowResult] = []
    flow_latencies: list[float] = []
    failed = 0
    started = 0

    async def user(index: int) -> None:
        nonlocal failed, started
        while time.perf_counter() < deadline:
            if max_flows is not None and started >= max_flows:
                return
            started += 1
            begin = time.perf_counter()
            try:
                result = await complete_flow(
                    session, rec, target, f"user{index}", with_mcp=with_mcp
                )
            except (FlowError, KeyError, ValueError) as exc:
                failed += 1
                rec.fail("flow", f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.05)
                continue
            flow_latencies.append(time.perf_counter() - begin)
            results.append(result)

    begin = time.perf_counter()
    await asyncio.gather(*(user(i) for i in range(clients)))
    elapsed = time.perf_counter() - begin
    return RunStats(len(results), failed, elapsed, flow_latencies), results


async def run_loop(
    name: str,
    rec: Recorder,
    step: Callable[[int], Awaitable[bool]],
    *,
    concurrency: int,
    duration: float,
) -> RunStats:
    """`concurrency` tasks calling `step(task_index)` until the deadline.

    `step` returns False when it has nothing left to do (a pool ran dry).
    """
    deadline = time.perf_counter() + duration
    latencies = rec.latencies[name]
    first = len(latencies)
    failed_before = rec.errors.get(name, 0)

    async def worker(index: int) -> None:
        while time.perf_counter() < deadline:
            try:
                if not await step(index):
                    return
            except FlowError:
                await asyncio.sleep(0.01)

    begin = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - begin
    done = latencies[first:]
    return RunStats(len(done), rec.errors.get(name, 0) - failed_before, elapsed, done)


def new_session(concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=max(concurrency * 2, 16), ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=30),
    )
