"""HTTP to the IdP: a pooled session and the token-endpoint error mapping."""

from __future__ import annotations

import http.client
import logging
import time
import typing as t
from collections.abc import Iterator

import requests
from requests.adapters import HTTPAdapter

from proxy.observability import metrics
from proxy.upstream.base import UpstreamError
from proxy.upstream.base import UpstreamTokens

log = logging.getLogger(__name__)

#: A connection the IdP (or a load balancer before it) closed while idle
#: fails at once, with no status line at all (RemoteDisconnected), when the
#: pool hands it out just as the close arrives. Such a request is sent once
#: more, on another connection (J70). A token endpoint answers in tens of
#: milliseconds, so this window does not tell a stale connection from an IdP
#: that died mid-request; it only keeps a slow failure from being doubled.
STALE_CONNECTION_SECONDS = 1.0


def pooled_session(user_agent: str = "mcp-oauth-proxy") -> requests.Session:
    """One keep-alive session per process: no TLS handshake per upstream call."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = user_agent
    return session


def observed(
    endpoint: str, send: t.Callable[[], requests.Response]
) -> requests.Response:
    """Send one request to the IdP, counted and timed under ``endpoint``
    (``discovery``, ``token``, ``userinfo``, ``jwks``, ``api``); once more if
    the connection was closed before any answer (each attempt counted)."""
    started = time.perf_counter()
    try:
        try:
            response = send()
        except requests.ConnectionError as exc:
            elapsed = time.perf_counter() - started
            if not (_closed_without_answer(exc) and elapsed < STALE_CONNECTION_SECONDS):
                raise
            metrics.observe_upstream(endpoint, "closed_unanswered", elapsed)
            log.info("IdP %s: closed before any answer; sent again", endpoint)
            started = time.perf_counter()
            response = send()
    except requests.RequestException:
        metrics.observe_upstream(
            endpoint, "network_error", time.perf_counter() - started
        )
        raise
    metrics.observe_upstream(
        endpoint,
        metrics.status_outcome(response.status_code),
        time.perf_counter() - started,
    )
    return response


def _closed_without_answer(exc: BaseException) -> bool:
    """Whether requests' error wraps http.client's RemoteDisconnected (no
    status line received), through urllib3's ProtocolError or MaxRetryError."""
    return any(isinstance(c, http.client.RemoteDisconnected) for c in _causes(exc))


def network_failure(exc: requests.RequestException) -> str:
    """What went wrong, for the operator's log: the exception's class and its
    innermost cause's (``ConnectionError (ConnectionResetError)``), never a
    message, which can carry a URL and its query."""
    inner = None
    for cause in _causes(exc):
        # requests' own exceptions are OSErrors too; urllib3's wrappers are
        # neither, except IncompleteRead, which is http.client's as well.
        if isinstance(cause, (OSError, http.client.HTTPException)) and not isinstance(
            cause, requests.RequestException
        ):
            inner = cause
    name = exc.__class__.__name__
    return f"{name} ({inner.__class__.__name__})" if inner is not None else name


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: exception arguments (urllib3's
    ProtocolError), MaxRetryError's ``reason``, and explicit causes (``raise
    ... from``); never ``__context__``, which an error raised while the
    caller handled an earlier one would inherit."""
    pending: list[BaseException] = [exc]
    for _ in range(16):  # requests -> urllib3 -> http.client, and room to spare
        if not pending:
            return
        current = pending.pop(0)
        yield current
        pending += [a for a in current.args if isinstance(a, BaseException)]
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            pending.append(reason)
        if current.__cause__ is not None:
            pending.append(current.__cause__)


#: RFC 6749 §5.2 error codes that mean the IdP refused our own credentials.
CLIENT_ERRORS = frozenset({"invalid_client", "unauthorized_client"})


#: Answers that say "not now" rather than "never": retried, never fatal.
TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error", "slow_down"})


def token_error(error: str, status: int = 400) -> UpstreamError:
    """The UpstreamError for an error answer from the token endpoint.

    Only ``invalid_grant`` means the user's upstream grant is dead (and ends
    ours). A rate limit, a WAF page, a code-less 4xx or a transient code is
    ``unavailable``: a 503 to the client, and nothing is revoked.
    """
    if not error or status in (408, 429) or error in TRANSIENT_ERRORS:
        kind = "unavailable"
    elif error == "invalid_grant":
        kind = "invalid_grant"
    elif error in CLIENT_ERRORS:
        kind = "invalid_client"
    else:
        kind = "rejected"
    label = error[:64] or f"http_{status}"
    return UpstreamError(
        kind, f"token endpoint: {label}", error=label, endpoint="token"
    )


def refresh_with(
    token_request: t.Callable[[dict[str, str]], dict[str, t.Any]],
    tokens: UpstreamTokens,
) -> UpstreamTokens:
    """RFC 6749 §6 through a provider's own token request."""
    if not tokens.refresh_token:
        raise UpstreamError("invalid_grant", "no upstream refresh token")
    data = token_request(
        {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token}
    )
    return tokens_from(data, previous_refresh=tokens.refresh_token)


def tokens_from(data: dict[str, t.Any], previous_refresh: str | None) -> UpstreamTokens:
    expires_in = data.get("expires_in")
    expires_at = (
        int(time.time() + float(expires_in))
        if isinstance(expires_in, (int, float, str))
        and str(expires_in).replace(".", "", 1).isdigit()
        else None
    )
    refresh = data.get("refresh_token")
    id_token = data.get("id_token")
    scope = data.get("scope")
    return UpstreamTokens(
        access_token=data["access_token"],
        # An IdP that does not rotate keeps the refresh token we had.
        refresh_token=refresh if isinstance(refresh, str) else previous_refresh,
        expires_at=expires_at,
        id_token=id_token if isinstance(id_token, str) else None,
        scope=scope if isinstance(scope, str) else None,
    )


def _form_encode(value: str) -> str:
    """RFC 6749 §2.3.1: Basic credentials are form-urlencoded before base64."""
    from urllib.parse import quote_plus

    return quote_plus(value)
