"""Fixtures for the client rooms: an https document server with a test CA."""

from __future__ import annotations

from tests.document_server import ca_file
from tests.document_server import document_ca
from tests.document_server import document_server
from tests.document_server import trust_test_ca

__all__ = ["ca_file", "document_ca", "document_server", "trust_test_ca"]
