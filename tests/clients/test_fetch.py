"""proxy/clients/fetch.py: every SSRF and bounding rule, over real https."""

from __future__ import annotations

import ipaddress
import json
import os
import pathlib
import subprocess
import sys
import threading
import typing as t

import pytest

from proxy.clients.document_source import DocumentError
from proxy.clients.fetch import RESOLVER_THREADS
from proxy.clients.fetch import DocumentFetcher
from proxy.clients.fetch import refused_address
from proxy.config.client_documents import ClientDocuments
from tests.document_server import DocumentServer
from tests.document_server import Route

ROOT = pathlib.Path(__file__).resolve().parents[2]

PRIVATE_OK = ClientDocuments(allowed_private_hosts=frozenset({"127.0.0.1"}))


def fetcher(
    ca_file: str, settings: ClientDocuments = PRIVATE_OK, **kw: object
) -> DocumentFetcher:
    return DocumentFetcher(settings, ca_file=ca_file, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",  # loopback
        "127.1.2.3",
        "10.0.0.5",  # RFC 1918
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",  # CGNAT, RFC 6598
        "169.254.169.254",  # link-local: cloud metadata
        "224.0.0.1",  # multicast
        "239.255.255.250",
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "0.0.0.0",  # noqa: S104 - unspecified, as data
        "192.0.2.1",  # documentation (TEST-NET-1)
        "::1",
        "::",
        "fc00::1",  # unique local
        "fd12:3456::1",
        "fe80::1",  # link-local
        "ff02::1",  # multicast
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "2001:db8::1",  # documentation
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    """CIMD-7: loopback, private, link-local, multicast, reserved, mapped forms."""
    assert refused_address(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refused_address(ipaddress.ip_address(address)) is None


def test_a_document_is_fetched_over_https(
    document_server: DocumentServer, ca_file: str
) -> None:
    url = document_server.serve_json(
        "/c.json", {"a": 1}, headers={"Cache-Control": "max-age=600"}
    )
    fetched = fetcher(ca_file).fetch(url)
    assert fetched.body == {"a": 1}
    assert fetched.headers["cache-control"] == "max-age=600"


@pytest.mark.parametrize("resolved", [["127.0.0.1"], ["8.8.8.8", "127.0.0.1"]])
def test_a_host_resolving_to_loopback_is_refused_and_receives_nothing(
    document_server: DocumentServer, ca_file: str, resolved: list[str]
) -> None:
    """CIMD-7: any internal address among the answers refuses the host."""
    document_server.serve_json("/c.json", {"a": 1})
    url = f"https://localhost:{document_server.port}/c.json"
    fetch = fetcher(
        ca_file, ClientDocuments(), resolver=lambda host, port: list(resolved)
    )
    with pytest.raises(DocumentError, match="public addresses only"):
        fetch.fetch(url)
    assert document_server.hits["/c.json"] == 0


def test_an_ip_literal_is_checked_too(
    document_server: DocumentServer, ca_file: str
) -> None:
    url = document_server.serve_json("/c.json", {"a": 1})
    with pytest.raises(DocumentError, match="loopback"):
        fetcher(ca_file, ClientDocuments()).fetch(url)
    assert document_server.hits["/c.json"] == 0


def test_the_host_is_resolved_once_and_that_address_is_used(
    document_server: DocumentServer, ca_file: str
) -> None:
    """No DNS rebinding window: one resolution, then a connect to its answer."""
    calls: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"]

    document_server.serve_json("/c.json", {"a": 1})
    settings = ClientDocuments(allowed_private_hosts=frozenset({"localhost"}))
    fetch = fetcher(ca_file, settings, resolver=resolver)
    url = f"https://localhost:{document_server.port}/c.json"
    assert fetch.fetch(url).body == {"a": 1}
    assert calls == ["localhost"]


def test_the_certificate_is_checked_against_the_host_name(
    document_server: DocumentServer, ca_file: str
) -> None:
    """Connecting to the checked address keeps TLS bound to the name."""
    document_server.serve_json("/c.json", {"a": 1})
    settings = ClientDocuments(allowed_private_hosts=frozenset({"other.test"}))
    fetch = fetcher(ca_file, settings, resolver=lambda host, port: ["127.0.0.1"])
    with pytest.raises(DocumentError, match="TLS"):
        fetch.fetch(f"https://other.test:{document_server.port}/c.json")


def test_an_untrusted_certificate_is_refused(document_server: DocumentServer) -> None:
    url = document_server.serve_json("/c.json", {"a": 1})
    with pytest.raises(DocumentError, match="TLS"):
        DocumentFetcher(PRIVATE_OK).fetch(url)


def test_ssl_cert_file_adds_the_test_ca(
    document_server: DocumentServer, trust_test_ca: str
) -> None:
    url = document_server.serve_json("/c.json", {"a": 1})
    assert DocumentFetcher(PRIVATE_OK).fetch(url).body == {"a": 1}


def test_requests_ca_bundle_adds_the_test_ca(
    document_server: DocumentServer, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    url = document_server.serve_json("/c.json", {"a": 1})
    assert DocumentFetcher(PRIVATE_OK).fetch(url).body == {"a": 1}


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/c.json", "ftp://127.0.0.1/c.json", "https://u:p@127.0.0.1/c"],
)
def test_only_plain_https_urls_are_fetched(url: str, ca_file: str) -> None:
    with pytest.raises(DocumentError):
        fetcher(ca_file).fetch(url)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_an_error_and_its_target_gets_nothing(
    document_server: DocumentServer, ca_file: str, status: int
) -> None:
    """CIMD-3: redirects are not followed."""
    target = document_server.serve_json("/target.json", {"a": 1})
    document_server.routes["/c.json"] = Route(
        b"", status=status, headers={"Location": target}
    )
    with pytest.raises(DocumentError, match=str(status)):
        fetcher(ca_file).fetch(document_server.url("/c.json"))
    assert document_server.hits["/c.json"] == 1
    assert document_server.hits["/target.json"] == 0


@pytest.mark.parametrize("status", [201, 204, 404, 500, 503])
def test_only_a_200_is_a_document(
    document_server: DocumentServer, ca_file: str, status: int
) -> None:
    """CIMD-3."""
    url = document_server.serve_json("/c.json", {"a": 1}, status=status)
    with pytest.raises(DocumentError, match=str(status)):
        fetcher(ca_file).fetch(url)


@pytest.mark.parametrize("chunked", [False, True])
def test_an_oversized_body_is_refused(
    document_server: DocumentServer, ca_file: str, chunked: bool
) -> None:
    """CIMD-8: the limit holds with or without a Content-Length."""
    url = document_server.serve_json("/c.json", {"pad": "x" * 6000}, chunked=chunked)
    with pytest.raises(DocumentError, match="larger than 5120 bytes"):
        fetcher(ca_file).fetch(url)


def test_a_body_at_the_limit_is_accepted(
    document_server: DocumentServer, ca_file: str
) -> None:
    body = {"pad": "x" * (5120 - len(json.dumps({"pad": ""})))}
    url = document_server.serve_json("/c.json", body, chunked=True)
    assert fetcher(ca_file).fetch(url).body == body


def test_a_dripping_body_hits_the_deadline(
    document_server: DocumentServer, ca_file: str
) -> None:
    """CIMD-8: one deadline for the whole fetch, however the bytes arrive."""
    url = document_server.serve_json("/c.json", {"pad": "x" * 200}, drip=0.02)
    settings = ClientDocuments(
        allowed_private_hosts=frozenset({"127.0.0.1"}), fetch_timeout_seconds=0.5
    )
    with pytest.raises(DocumentError, match="in time"):
        fetcher(ca_file, settings).fetch(url)


def test_a_server_that_never_answers_hits_the_deadline(
    document_server: DocumentServer, ca_file: str
) -> None:
    url = document_server.serve_json("/c.json", {"a": 1}, delay=3)
    settings = ClientDocuments(
        allowed_private_hosts=frozenset({"127.0.0.1"}), fetch_timeout_seconds=0.3
    )
    with pytest.raises(DocumentError, match="in time"):
        fetcher(ca_file, settings).fetch(url)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "valid JSON"),
        (b"\xff\xfe\x00", "valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"text"', "JSON object"),
        (b"null", "JSON object"),
    ],
)
def test_only_a_json_object_is_a_document(
    document_server: DocumentServer, ca_file: str, body: bytes, reason: str
) -> None:
    document_server.routes["/c.json"] = Route(body)
    with pytest.raises(DocumentError, match=reason):
        fetcher(ca_file).fetch(document_server.url("/c.json"))


def test_the_content_type_need_not_be_exact(
    document_server: DocumentServer, ca_file: str
) -> None:
    url = document_server.serve_json(
        "/c.json", {"a": 1}, headers={"Content-Type": "text/plain"}
    )
    assert fetcher(ca_file).fetch(url).body == {"a": 1}


def test_an_unresolvable_host_is_a_reported_error(ca_file: str) -> None:
    def resolver(host: str, port: int) -> list[str]:
        raise OSError("no such host")

    with pytest.raises(DocumentError, match="cannot be resolved"):
        fetcher(ca_file, resolver=resolver).fetch("https://nowhere.test/c.json")


class StalledResolver:
    """A DNS server that never answers: each call blocks until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls += 1
        self.release.wait(60)
        return ["127.0.0.1"]


@pytest.fixture
def stalled() -> t.Iterator[StalledResolver]:
    resolver = StalledResolver()
    yield resolver
    resolver.release.set()


def test_a_stalled_resolver_is_bounded_by_the_deadline(
    ca_file: str, stalled: StalledResolver
) -> None:
    """getaddrinfo has no timeout: the fetch gives up on it at its deadline."""
    settings = ClientDocuments(fetch_timeout_seconds=0.2, connect_timeout_seconds=0.2)
    with pytest.raises(DocumentError, match="did not resolve in time"):
        fetcher(ca_file, settings, resolver=stalled).fetch(
            "https://stalled.test/c.json"
        )
    assert stalled.calls == 1


def test_stalled_resolutions_do_not_pile_up_threads(
    ca_file: str, stalled: StalledResolver
) -> None:
    """More stalls than resolver threads: each still fails at its deadline,
    and the queued ones never start (the pool holds at most its threads)."""
    settings = ClientDocuments(fetch_timeout_seconds=0.1, connect_timeout_seconds=0.1)
    fetch = fetcher(ca_file, settings, resolver=stalled)
    for n in range(RESOLVER_THREADS + 3):
        with pytest.raises(DocumentError, match="did not resolve in time"):
            fetch.fetch(f"https://stalled-{n}.test/c.json")
    assert stalled.calls <= RESOLVER_THREADS


GEVENT_STALL = """
from gevent import monkey

monkey.patch_all()

import gevent
import time

from proxy.clients.document_source import DocumentError
from proxy.clients.fetch import DocumentFetcher
from proxy.config.client_documents import ClientDocuments

native_sleep = monkey.get_original("time", "sleep")


def cooperative(host, port):
    time.sleep(60)  # patched: a greenlet that never comes back
    return ["127.0.0.1"]


def native(host, port):
    # How gevent's default resolver runs getaddrinfo: in its thread pool,
    # this greenlet waiting for the result.
    gevent.get_hub().threadpool.apply(native_sleep, (60,))
    return ["127.0.0.1"]


settings = ClientDocuments(fetch_timeout_seconds=0.2, connect_timeout_seconds=0.2)
for resolver in (cooperative, native):
    try:
        DocumentFetcher(settings, resolver=resolver).fetch("https://stalled.test/c")
    except DocumentError as exc:
        print(exc.reason)
"""


def test_a_stalled_resolver_is_bounded_under_gevent(tmp_path: pathlib.Path) -> None:
    """The gunicorn worker's way: gevent-patched, the wait is a gevent Timeout."""
    done = subprocess.run(
        [sys.executable, "-c", GEVENT_STALL],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "the host stalled.test did not resolve in time",
        "the host stalled.test did not resolve in time",
    ]
