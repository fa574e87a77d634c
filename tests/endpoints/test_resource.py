"""GET /.well-known/oauth-protected-resource[/<path>]: RFC 9728 §3."""

from __future__ import annotations

import typing as t

import pytest

from ._helpers import ISSUER
from ._helpers import RESOURCE
from ._helpers import assert_page

PRM_PATH = "/.well-known/oauth-protected-resource/mcp"
PRM_ROOT = "/.well-known/oauth-protected-resource"


def _prm(client: t.Any, path: str = PRM_PATH) -> dict[str, t.Any]:
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return t.cast(dict[str, t.Any], response.get_json())


def test_prm_is_served_at_the_path_inserted_url(client: t.Any) -> None:
    """PRM-1: RFC 9728 metadata at /.well-known/oauth-protected-resource/mcp."""
    assert _prm(client)["resource"] == RESOURCE


def test_prm_root_is_served_too(client: t.Any) -> None:
    """PRM-2: the root form answers with the same servers and resource."""
    assert _prm(client, PRM_ROOT) == _prm(client)


def test_prm_for_another_path_is_404(client: t.Any) -> None:
    """PRM-1: only the protected resource's own path is served."""
    assert_page(client.get(PRM_ROOT + "/other"), 404)


def test_resource_is_the_canonical_mcp_uri(client: t.Any) -> None:
    """PRM-3: lowercase scheme and host, path kept, no trailing slash or fragment."""
    resource = _prm(client)["resource"]
    assert resource == "http://127.0.0.1:9999/mcp"
    assert not resource.endswith("/")
    assert "#" not in resource


def test_our_issuer_is_the_first_authorization_server(client: t.Any) -> None:
    """PRM-4: non-empty, and [0] equals the AS metadata issuer."""
    servers = _prm(client)["authorization_servers"]
    issuer = client.get("/.well-known/oauth-authorization-server").get_json()["issuer"]
    assert servers[0] == issuer == ISSUER


def test_scopes_supported_are_baseline_only(client: t.Any) -> None:
    """PRM-5: baseline scopes listed; no offline_access, wildcard or omnibus."""
    scopes = _prm(client)["scopes_supported"]
    assert scopes
    assert not {"offline_access", "*", "all"} & set(scopes)


@pytest.mark.parametrize("path", [PRM_PATH, PRM_ROOT])
def test_prm_omits_empty_values_and_bearer_is_header(client: t.Any, path: str) -> None:
    """PRM-6: no [] or null; bearer_methods_supported, if present, is ["header"]."""
    document = _prm(client, path)
    for value in document.values():
        assert value not in ([], {}, None, "")
    assert document.get("bearer_methods_supported", ["header"]) == ["header"]


def test_prm_is_cacheable(client: t.Any) -> None:
    """PRM-16: PRM is sent with a max-age."""
    assert "max-age=" in client.get(PRM_PATH).headers["Cache-Control"]


def test_prm_without_scopes_omits_the_field(settings: t.Any, fake_redis: t.Any) -> None:
    """PRM-6: zero scopes means no scopes_supported at all, not []."""
    from proxy import create_app

    app = create_app(settings.replace(mcp_scopes=()), redis_client=fake_redis)
    assert "scopes_supported" not in _prm(app.test_client())
