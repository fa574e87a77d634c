"""Drive the official MCP SDK OAuth client against the proxy, acting as the user.

The SDK's ``OAuthClientProvider`` does what Claude Code, VS Code and friends do:
401 -> protected resource metadata -> authorization server metadata -> dynamic
client registration -> authorization code + PKCE -> token -> refresh. The only
part the SDK leaves to the application is the browser; here a cookie-keeping
``requests.Session`` plays it: consent page, upstream IdP login
(oidc-provider-mock), the proxy's callback, and finally the redirect back to the
client, which is parsed instead of followed (nothing listens there).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from html.parser import HTMLParser
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urljoin
from urllib.parse import urlsplit

import anyio
import httpx2
import requests
from mcp.client.auth import OAuthClientProvider
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult
from mcp.shared.auth import OAuthClientInformationFull
from mcp.shared.auth import OAuthClientMetadata
from mcp.shared.auth import OAuthToken

#: Where the client says it listens. Nothing does: the last redirect is parsed.
DEFAULT_REDIRECT_URI = "http://127.0.0.1:33418/callback"
MAX_HOPS = 10
#: token_endpoint_auth_method of a public client (PKCE only), like most MCP clients.
PUBLIC_CLIENT = "none"


# --------------------------------------------------------------------------- #
# The browser
# --------------------------------------------------------------------------- #


class LoopbackIsSecurePolicy(DefaultCookiePolicy):
    """Send ``Secure`` cookies to http loopback hosts, as browsers do.

    Chrome and Firefox treat http://localhost and http://127.0.0.1 as secure
    contexts, so a proxy that marks its cookies ``Secure`` (``__Host-`` requires
    it) still works for a developer on loopback; Python's cookiejar would drop them.
    """

    def return_ok_secure(self, cookie: Any, request: Any) -> bool:
        host = urlsplit(request.get_full_url()).hostname or ""
        if _is_loopback(host):
            return True
        return bool(super().return_ok_secure(cookie, request))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LoopbackBrowserSession(requests.Session):
    """A ``requests.Session`` whose Cookie header honours the jar's policy.

    ``Session.prepare_request`` copies the cookies into a fresh jar with the
    default policy, which would lose ``LoopbackIsSecurePolicy``; the header is
    rebuilt from the session's own jar instead (per-request ``cookies=`` are
    therefore ignored; the flows here never use them).
    """

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        prepared = super().prepare_request(request)
        prepared.headers.pop("Cookie", None)
        prepared.prepare_cookies(self.cookies)
        return prepared


def new_browser() -> requests.Session:
    """A cookie-keeping session that behaves like a browser on loopback."""
    session = LoopbackBrowserSession()
    session.cookies.set_policy(LoopbackIsSecurePolicy())
    session.headers["User-Agent"] = "mcp-oauth-proxy-e2e/1.0"
    session.headers["Accept"] = "text/html,application/xhtml+xml,*/*;q=0.8"
    return session


@dataclass
class HtmlForm:
    """A ``<form>``: where it posts, its hidden inputs and its submit buttons."""

    action: str
    method: str
    hidden: dict[str, str] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)


class _FormParser(HTMLParser):
    """Collect every form, its hidden inputs and its named submit buttons."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[HtmlForm] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            method = a.get("method", "get").lower()
            self.forms.append(HtmlForm(action=a.get("action", ""), method=method))
            return
        if not self.forms or "name" not in a:
            return
        form = self.forms[-1]
        kind = a.get("type", "submit" if tag == "button" else "text").lower()
        if tag == "input" and kind == "hidden":
            form.hidden[a["name"]] = a.get("value", "")
        elif tag in ("button", "input") and kind == "submit":
            form.buttons.append((a["name"], a.get("value", "")))


def parse_forms(html: str) -> list[HtmlForm]:
    parser = _FormParser()
    parser.feed(html)
    parser.close()
    return parser.forms


@dataclass
class Hop:
    """One request the browser made, for error messages and assertions."""

    method: str
    url: str
    status: int
    location: str | None

    def __str__(self) -> str:
        tail = f" -> {self.location}" if self.location else ""
        return f"{self.method} {self.url} => {self.status}{tail}"


@dataclass
class BrowserFlowResult:
    """Where the browser ended up: the client's redirect_uri with its parameters."""

    redirect: str
    params: dict[str, str]
    hops: list[Hop]
    consent_form: HtmlForm | None


class BrowserFlowError(AssertionError):
    """The flow took a turn a browser could not follow; carries the whole trace."""


def mock_idp_login(
    browser: requests.Session, url: str, user: str, timeout: float
) -> requests.Response:
    """Log in at oidc-provider-mock: POST its authorize URL with ``sub``."""
    return browser.post(url, data={"sub": user}, allow_redirects=False, timeout=timeout)


IdpLogin = Callable[[requests.Session, str, str, float], requests.Response]


def run_browser_flow(
    authorize_url: str,
    user: str,
    *,
    browser: requests.Session | None = None,
    action: str = "approve",
    idp_login: IdpLogin = mock_idp_login,
    timeout: float = 10.0,
) -> BrowserFlowResult:
    """Follow an authorize URL as the user until the redirect back to the client.

    Hops: proxy authorize (consent page, or a redirect when consent is skipped)
    -> consent POST with ``action`` -> upstream IdP login as ``user`` -> proxy
    callback -> client redirect_uri, which is returned unfollowed. Redirects are
    followed by hand so every hop is visible in the trace.
    """
    browser = browser or new_browser()
    query = parse_qs(urlsplit(authorize_url).query)
    redirect_uri = query.get("redirect_uri", [""])[0]
    proxy_origin = _origin(authorize_url)
    hops: list[Hop] = []
    consent: HtmlForm | None = None

    def record(resp: requests.Response) -> requests.Response:
        hops.append(
            Hop(
                resp.request.method or "?",
                resp.request.url or "?",
                resp.status_code,
                resp.headers.get("Location"),
            )
        )
        return resp

    def fail(why: str, resp: requests.Response | None = None) -> BrowserFlowError:
        trace = "\n  ".join(str(h) for h in hops)
        body = f"\nlast body:\n{resp.text[:2000]}" if resp is not None else ""
        return BrowserFlowError(f"{why}\ntrace:\n  {trace}{body}")

    resp = record(browser.get(authorize_url, allow_redirects=False, timeout=timeout))
    for _ in range(MAX_HOPS):
        if resp.is_redirect:
            target = urljoin(resp.url, resp.headers["Location"])
            # The client's origin ends the flow even on a wrong path: nothing
            # listens there, and the caller's assertions show the mismatch.
            if redirect_uri and _origin(target) == _origin(redirect_uri):
                params = {k: v[0] for k, v in parse_qs(urlsplit(target).query).items()}
                return BrowserFlowResult(target, params, hops, consent)
            if _origin(target) != proxy_origin:
                resp = record(idp_login(browser, target, user, timeout))
            else:
                resp = record(
                    browser.get(target, allow_redirects=False, timeout=timeout)
                )
            continue
        if resp.status_code == 200 and _origin(resp.url) == proxy_origin:
            forms = [f for f in parse_forms(resp.text) if f.method == "post"]
            if consent is not None or not forms:
                raise fail("expected a consent form (once) from the proxy", resp)
            consent = forms[0]
            if ("action", action) not in consent.buttons:
                raise fail(f"consent form has no action={action!r} button", resp)
            data = {**consent.hidden, "action": action}
            post_to = urljoin(resp.url, consent.action or resp.url)
            resp = record(
                browser.post(post_to, data=data, allow_redirects=False, timeout=timeout)
            )
            continue
        raise fail(f"unexpected response {resp.status_code}", resp)
    raise fail(f"more than {MAX_HOPS} hops")


def drive_browser_login(
    authorize_url: str,
    user: str,
    *,
    browser: requests.Session | None = None,
    idp_login: IdpLogin = mock_idp_login,
    timeout: float = 10.0,
) -> tuple[str, str | None, str | None]:
    """Approve consent and log in as ``user``; return ``(code, state, iss)``."""
    result = run_browser_flow(
        authorize_url, user, browser=browser, idp_login=idp_login, timeout=timeout
    )
    if "code" not in result.params:
        trace = "\n  ".join(str(h) for h in result.hops)
        raise BrowserFlowError(
            f"no code in redirect {result.redirect}\ntrace:\n  {trace}"
        )
    return result.params["code"], result.params.get("state"), result.params.get("iss")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


# --------------------------------------------------------------------------- #
# The MCP client
# --------------------------------------------------------------------------- #


class InMemoryTokenStorage:
    """The SDK's TokenStorage, in memory, remembering every token set it was given."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None
        self.history: list[OAuthToken] = []

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        self.history.append(tokens)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


@dataclass
class HttpEvent:
    """One request the SDK's HTTP client sent (including OAuth requests)."""

    method: str
    url: str
    status: int


@dataclass
class ToolCalls:
    """What the tools answered within one phase of the session."""

    whoami: dict[str, Any]
    echo: str


@dataclass
class FlowReport:
    """Everything a test may want to assert about one connect-call-refresh run."""

    storage: InMemoryTokenStorage
    tools: list[str]
    before: ToolCalls
    tokens_before: OAuthToken
    after: ToolCalls | None = None
    tokens_after: OAuthToken | None = None
    authorize_urls: list[str] = field(default_factory=list)
    logins: list[BrowserFlowResult] = field(default_factory=list)
    http: list[HttpEvent] = field(default_factory=list)

    def requests_to(self, path: str, method: str | None = None) -> list[HttpEvent]:
        return [
            e
            for e in self.http
            if urlsplit(e.url).path == path and (method is None or e.method == method)
        ]


class BrowserUser:
    """The SDK's redirect/callback handler pair, backed by the scripted browser."""

    def __init__(self, user: str, *, idp_login: IdpLogin = mock_idp_login) -> None:
        self.user = user
        self.idp_login = idp_login
        self.browser = new_browser()
        self.authorize_urls: list[str] = []
        self.logins: list[BrowserFlowResult] = []

    async def redirect_handler(self, authorization_url: str) -> None:
        self.authorize_urls.append(authorization_url)

    async def callback_handler(self) -> AuthorizationCodeResult:
        url = self.authorize_urls[-1]
        result = await anyio.to_thread.run_sync(self._login, url)
        self.logins.append(result)
        params = result.params
        if "code" not in params:
            raise BrowserFlowError(f"authorization failed: {result.redirect}")
        return AuthorizationCodeResult(
            code=params["code"], state=params.get("state"), iss=params.get("iss")
        )

    def _login(self, url: str) -> BrowserFlowResult:
        return run_browser_flow(
            url, self.user, browser=self.browser, idp_login=self.idp_login
        )


def make_provider(
    mcp_url: str,
    storage: InMemoryTokenStorage,
    browser_user: BrowserUser,
    *,
    redirect_uri: str = DEFAULT_REDIRECT_URI,
    token_endpoint_auth_method: str | None = PUBLIC_CLIENT,
    client_metadata_url: str | None = None,
) -> OAuthClientProvider:
    """An SDK OAuth provider registering like a native MCP client does.

    With ``client_metadata_url`` it uses that URL as its client id (CIMD)
    when the server advertises support, and registers nothing.
    """
    metadata = OAuthClientMetadata.model_validate(
        {
            "client_name": "mcp-oauth-proxy e2e client",
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": token_endpoint_auth_method,
        }
    )
    return OAuthClientProvider(
        server_url=mcp_url,
        client_metadata=metadata,
        storage=storage,
        redirect_handler=browser_user.redirect_handler,
        callback_handler=browser_user.callback_handler,
        client_metadata_url=client_metadata_url,
    )


def expire_access_token(provider: OAuthClientProvider) -> None:
    """Make the provider treat its access token as expired, so it refreshes.

    The provider reads storage only once and keeps the expiry time in memory, so
    expiring the stored token alone would not trigger a refresh. A fresh provider
    would not know the token endpoint either (discovery happens on a 401), so the
    live provider's clock is moved instead, as if ``expires_in`` had elapsed.
    """
    provider.context.token_expiry_time = time.time() - 1


async def _call_tools(session: ClientSession, text: str) -> ToolCalls:
    who = await session.call_tool("whoami", {})
    if who.is_error:
        raise AssertionError(f"whoami failed: {who.content}")
    echoed = await session.call_tool("echo", {"text": text})
    if echoed.is_error:
        raise AssertionError(f"echo failed: {echoed.content}")
    block = echoed.content[0]
    return ToolCalls(
        whoami=dict(who.structured_content or {}),
        echo=str(getattr(block, "text", "")),
    )


def recording_http_client(
    provider: OAuthClientProvider, timeout: float
) -> tuple[httpx2.AsyncClient, list[HttpEvent]]:
    """An HTTP client that authenticates with `provider` and logs every response."""
    events: list[HttpEvent] = []

    async def on_response(response: httpx2.Response) -> None:
        req = response.request
        events.append(HttpEvent(req.method, str(req.url), response.status_code))

    http = httpx2.AsyncClient(
        auth=provider,
        timeout=httpx2.Timeout(timeout, read=timeout),
        event_hooks={"response": [on_response]},
    )
    return http, events


async def connect_and_call(
    mcp_url: str,
    user: str,
    storage: InMemoryTokenStorage | None = None,
    *,
    refresh: bool = True,
    token_endpoint_auth_method: str | None = PUBLIC_CLIENT,
    idp_login: IdpLogin = mock_idp_login,
    timeout: float = 30.0,
    client_metadata_url: str | None = None,
) -> FlowReport:
    """Connect, call ``whoami`` and ``echo``, optionally refresh and call again.

    With a fresh ``storage`` (the default) this is a first connection: 401,
    discovery, registration, browser login. The refresh happens in the same MCP
    session, on the next request after the access token is marked expired.
    Returns what happened at every step.
    """
    storage = storage or InMemoryTokenStorage()
    browser_user = BrowserUser(user, idp_login=idp_login)
    provider = make_provider(
        mcp_url,
        storage,
        browser_user,
        token_endpoint_auth_method=token_endpoint_auth_method,
        client_metadata_url=client_metadata_url,
    )
    http, events = recording_http_client(provider, timeout)
    with anyio.fail_after(timeout * 3):
        async with (
            http,
            streamable_http_client(mcp_url, http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            listed = await session.list_tools()
            before = await _call_tools(session, "before refresh")
            if storage.tokens is None:
                raise AssertionError("the provider stored no tokens")
            report = FlowReport(
                storage=storage,
                tools=sorted(t.name for t in listed.tools),
                before=before,
                tokens_before=storage.tokens,
                authorize_urls=browser_user.authorize_urls,
                logins=browser_user.logins,
                http=events,
            )
            if refresh:
                expire_access_token(provider)
                report.after = await _call_tools(session, "after refresh")
                report.tokens_after = storage.tokens
    return report
