"""The pytest side of support/document_server.py: the test CA, its PEM file,
a DocumentServer per test, and SSL_CERT_FILE pointing at the CA.

`DocumentServer` and `Route` are re-exported so tests import them from here.
"""

from __future__ import annotations

import typing as t

import pytest
import trustme

from support.document_server import DocumentServer
from support.document_server import Route

__all__ = ["DocumentServer", "Route"]


@pytest.fixture(scope="session")
def document_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(document_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The test CA's certificate as a PEM file (for SSL_CERT_FILE)."""
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    document_ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def document_server(document_ca: trustme.CA) -> t.Iterator[DocumentServer]:
    server = DocumentServer(document_ca)
    yield server
    server.close()


@pytest.fixture
def trust_test_ca(ca_file: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """SSL_CERT_FILE names the test CA, as an operator's would name theirs."""
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    return ca_file
