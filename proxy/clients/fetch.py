"""Fetching a client's document from the internet, SSRF-safe (CIMD §6.5, §6.6).

A client id URL or a `jwks_uri` is chosen by whoever runs the client, so the
proxy must not become their way into its own network. Each fetch:

1. is https only, to a host that resolves (once, within the deadline) to
   public addresses only, unless the operator listed the host in
   CIMD_ALLOWED_PRIVATE_HOSTS;
2. connects to the very address that was checked, with the certificate still
   verified against the host name, so DNS rebinding has no window;
3. follows no redirect (a 3xx is an error and its target gets no request);
4. is bounded in time (connect timeout, one deadline for the whole fetch) and
   size (the body is read as a stream and refused past the limit);
5. yields a JSON object or an error a user can report.

Trust comes from the system CA store; SSL_CERT_FILE (read by OpenSSL) and
REQUESTS_CA_BUNDLE (read by requests, as for the upstream IdP) add to it,
e.g. a test CA.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import logging
import os
import socket
import ssl
import sys
import threading
import time
import typing as t
from dataclasses import dataclass
from dataclasses import field
from urllib.parse import urlsplit

import requests
import urllib3
import urllib3.exceptions

from proxy.clients.document_source import DocumentError

if t.TYPE_CHECKING:
    from proxy.config.client_documents import ClientDocuments

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = t.Callable[[str, int], list[str]]

USER_AGENT = "mcp-oauth-proxy (client metadata fetcher)"
CHUNK_BYTES = 1024
#: Response headers the cache needs (RFC 9111 §5).
CACHE_HEADERS = ("cache-control", "expires", "date", "age")

# RFC 6052 §2.1 well-known NAT64 prefix: the last 32 bits are an IPv4 address.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# RFC 6598 shared address space (CGNAT): neither private nor global.
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")


@dataclass(frozen=True, slots=True)
class Fetched:
    """A fetched JSON object and the caching headers it came with."""

    body: dict[str, t.Any]
    headers: dict[str, str] = field(default_factory=dict)


def refused_address(address: IPAddress) -> str | None:
    """Why this address is not on the public internet, or None if it is.

    CIMD §6.5 / CIMD-7: loopback, private (RFC 1918, fc00::/7), shared
    (100.64/10), link-local (169.254/16, fe80::/10), multicast, reserved and
    unspecified addresses are refused, and so are IPv6 forms that carry such
    an IPv4 address (IPv4-mapped, 6to4, NAT64, Teredo).
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = refused_address(embedded)
            return f"{reason} (inside an IPv6 address)" if reason else None
    checks = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address in _SHARED, "a shared (CGNAT) address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a public address"),
    )
    for refused, why in checks:
        if refused:
            return why
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, once (bounded by :func:`resolve_within`)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


#: Outside gevent, resolutions run in this many threads at most: a stalled
#: resolver holds its thread until the OS gives up, so stalls cannot pile up
#: threads, and a resolution still queued at its deadline is never started.
RESOLVER_THREADS = 4
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def resolve_within(
    resolver: Resolver, host: str, port: int, timeout: float
) -> list[str]:
    """`resolver(host, port)`, abandoned after `timeout` s with TimeoutError.

    getaddrinfo has no timeout of its own. Under gunicorn's gevent worker it
    runs in gevent's resolver thread pool while this greenlet waits, so a
    gevent Timeout ends the wait; elsewhere (tests, the embedded demo, a
    threaded server) a bounded thread pool does the same.
    """
    if _gevent_patched():
        import gevent  # type: ignore[import-untyped]

        with gevent.Timeout(timeout, TimeoutError):
            return resolver(host, port)
    future = _resolver_pool().submit(resolver, host, port)
    try:
        return future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(f"resolving {host} took over {timeout} s") from None


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("socket"))


def _resolver_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(
                RESOLVER_THREADS, thread_name_prefix="cimd-resolver"
            )
        return _pool


def default_ca_file() -> str | None:
    """REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE as requests reads them, else None.

    Trusted in addition to the system store, where OpenSSL itself honours
    SSL_CERT_FILE, so either variable can add a CA (a test CA, say).
    """
    verify = requests.Session().merge_environment_settings(
        "https://localhost/", {}, None, None, None
    )["verify"]
    return verify if isinstance(verify, str) else None


class DocumentFetcher:
    """Fetches one JSON document at a time under the ClientDocuments bounds."""

    def __init__(
        self,
        settings: ClientDocuments,
        *,
        ca_file: str | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self._settings = settings
        self._resolver = resolver
        # The system store (OpenSSL reads SSL_CERT_FILE / SSL_CERT_DIR here),
        # plus the bundle requests would use, plus an explicit one.
        self._tls = ssl.create_default_context()
        for extra in dict.fromkeys(f for f in (default_ca_file(), ca_file) if f):
            if os.path.isdir(extra):
                self._tls.load_verify_locations(capath=extra)
            else:
                self._tls.load_verify_locations(cafile=extra)

    def fetch(self, url: str) -> Fetched:
        """The JSON object at `url`; raises DocumentError with a reportable reason."""
        started = time.monotonic()
        deadline = started + self._settings.fetch_timeout_seconds
        host, port, target = _target(url)
        address = self._address(host, port, deadline)
        pool = urllib3.HTTPSConnectionPool(
            address,
            port,
            # The certificate is checked against the name, not the address.
            server_hostname=host,
            assert_hostname=host,
            ssl_context=self._tls,
            maxsize=1,
            retries=False,
        )
        try:
            return self._get(pool, url, host, port, target, deadline)
        finally:
            pool.close()

    def _address(self, host: str, port: int, deadline: float) -> str:
        """The one address to connect to, checked (CIMD-7), resolved in time."""
        try:
            literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [str(literal)]
        else:
            timeout = min(
                self._settings.connect_timeout_seconds,
                max(0.01, deadline - time.monotonic()),
            )
            try:
                addresses = resolve_within(self._resolver, host, port, timeout)
            except TimeoutError:
                raise DocumentError(
                    f"the host {host} did not resolve in time"
                ) from None
            except (OSError, UnicodeError):
                raise DocumentError(f"the host {host} cannot be resolved") from None
            if not addresses:
                raise DocumentError(f"the host {host} cannot be resolved")
        if host in self._settings.allowed_private_hosts:
            return addresses[0]
        # Every address must be public: a name that also resolves to an
        # internal one is refused, whichever the resolver listed first.
        for text in addresses:
            why = refused_address(ipaddress.ip_address(text.split("%")[0]))
            if why is not None:
                raise DocumentError(
                    f"the host {host} resolves to {why}: documents are fetched "
                    "from public addresses only"
                )
        return addresses[0]

    def _get(
        self,
        pool: urllib3.HTTPSConnectionPool,
        url: str,
        host: str,
        port: int,
        target: str,
        deadline: float,
    ) -> Fetched:
        limit = self._settings.max_document_bytes
        remaining = max(0.01, deadline - time.monotonic())
        try:
            response = pool.urlopen(
                "GET",
                target,
                headers={
                    "Host": host if port == 443 else f"{host}:{port}",
                    "Accept": "application/json",
                    "Accept-Encoding": "identity",
                    "User-Agent": USER_AGENT,
                },
                redirect=False,
                retries=False,
                preload_content=False,
                timeout=urllib3.Timeout(
                    connect=min(self._settings.connect_timeout_seconds, remaining),
                    read=remaining,
                ),
            )
        except urllib3.exceptions.SSLError:
            raise DocumentError(
                f"the TLS certificate of {host} is not trusted"
            ) from None
        except urllib3.exceptions.TimeoutError:
            raise DocumentError(f"{url} did not answer in time") from None
        except urllib3.exceptions.HTTPError:
            raise DocumentError(f"{url} cannot be reached") from None
        try:
            status = response.status
            # CIMD §4 (CIMD-3): only a 200 is a document; redirects are not
            # followed, so their target receives nothing from us.
            if 300 <= status < 400:
                raise DocumentError(
                    f"{url} answered {status} (a redirect); documents must be "
                    "served without redirects"
                )
            if status != 200:
                raise DocumentError(f"{url} answered {status}")
            encoding = response.headers.get("Content-Encoding", "identity").lower()
            if encoding not in ("", "identity"):
                raise DocumentError(f"{url} answered with {encoding} encoding")
            declared = response.headers.get("Content-Length", "")
            # CIMD §6.6 (CIMD-8): a bounded response size.
            if declared.isdigit() and int(declared) > limit:
                raise DocumentError(f"{url} is larger than {limit} bytes")
            body = _read_bounded(response, url, limit, deadline)
            headers = {
                name: response.headers[name]
                for name in CACHE_HEADERS
                if name in response.headers
            }
        finally:
            response.release_conn()
            response.close()
        return Fetched(_parse_object(body, url), headers)


def _target(url: str) -> tuple[str, int, str]:
    """Host, port and request target of an https URL."""
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError:
        raise DocumentError(f"{url!r} is not a valid URL") from None
    # CIMD §3 / CIMD-7: documents and keys are fetched over https only.
    if parts.scheme != "https":
        raise DocumentError(f"{url} is not an https URL")
    if parts.username is not None or not parts.hostname:
        raise DocumentError(f"{url} is not a plain https URL")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return parts.hostname.lower(), port, target


def _read_bounded(
    response: urllib3.BaseHTTPResponse, url: str, limit: int, deadline: float
) -> bytes:
    """The body, read as a stream under the size limit and the deadline."""
    connection = getattr(response, "connection", None)
    sock = getattr(connection, "sock", None)
    received = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DocumentError(f"{url} did not send its document in time")
        if sock is not None:
            # One deadline for the whole body: each read waits at most what
            # is left, so a server dripping bytes cannot stretch the fetch.
            sock.settimeout(remaining)
        try:
            chunk = response.read1(CHUNK_BYTES)
        except (urllib3.exceptions.TimeoutError, TimeoutError):
            raise DocumentError(f"{url} did not send its document in time") from None
        except (urllib3.exceptions.HTTPError, OSError):
            raise DocumentError(f"{url} broke off while sending") from None
        if not chunk:
            return bytes(received)
        received += chunk
        if len(received) > limit:
            raise DocumentError(f"{url} is larger than {limit} bytes")


def _parse_object(body: bytes, url: str) -> dict[str, t.Any]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise DocumentError(f"{url} did not return valid JSON") from None
    if not isinstance(document, dict):
        raise DocumentError(f"{url} did not return a JSON object")
    return document
