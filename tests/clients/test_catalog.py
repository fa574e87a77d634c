"""proxy/clients/catalog.py: loading, identify(), the trust decision, pinned copies."""

from __future__ import annotations

import json
import pathlib
import tomllib
import typing as t

import pytest

from proxy.clients import catalog
from proxy.clients.catalog import UriPattern
from proxy.config.env import ConfigError
from proxy.config.settings import Settings
from proxy.store.records import ClientRecord

SHIPPED = pathlib.Path(catalog.__file__).with_name("catalog.json")

#: Every client of shared/reference/clients.md, by its settings name.
NAMES = {
    "chatgpt",
    "codex",
    "claude",
    "claude-code",
    "vscode",
    "cursor",
    "grok",
    "goose",
    "open-webui",
    "opencode",
    "mcp-remote",
    "mcp-inspector",
}


def shipped() -> catalog.Catalog:
    return catalog.parse(SHIPPED.read_bytes(), source="shipped")


def dcr(*redirect_uris: str, client_id: str = "mcp_x") -> ClientRecord:
    return ClientRecord(
        client_id=client_id,
        redirect_uris=redirect_uris,
        token_endpoint_auth_method="none",
        grant_types=("authorization_code",),
        client_id_issued_at=0,
    )


def minimal(**entry: t.Any) -> dict[str, t.Any]:
    """A one-client catalog; `entry` overrides the client's fields."""
    client = {
        "name": "acme",
        "display_name": "Acme",
        "registers_by": ["dcr"],
        "redirect_uris": ["https://acme.example/cb"],
        **entry,
    }
    return {"format": 1, "updated": "2026-12-06", "clients": [client]}


def write(tmp_path: pathlib.Path, data: t.Any) -> str:
    path = tmp_path / "catalog.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


# -- the shipped file ------------------------------------------------------------


def test_the_shipped_catalog_lists_every_reference_client() -> None:
    assert {entry.name for entry in shipped().entries} == NAMES


def test_the_shipped_catalog_is_package_data() -> None:
    """A non-editable install carries catalog.json (setuptools package-data)."""
    pyproject = tomllib.loads(
        (pathlib.Path(__file__).parents[2] / "pyproject.toml").read_text()
    )
    patterns = pyproject["tool"]["setuptools"]["package-data"]["proxy"]
    root = pathlib.Path(catalog.__file__).parents[1]
    assert any(SHIPPED in root.glob(pattern) for pattern in patterns)


def test_pinned_copies_are_marked_as_reconstructed_with_a_date() -> None:
    pinned = [entry.pinned for entry in shipped().entries if entry.pinned]
    assert pinned
    for copy in pinned:
        assert "reconstructed" in copy.source
        assert copy.reconstructed_on == "2026-12-06"


def test_without_a_file_setting_the_shipped_catalog_loads(settings: Settings) -> None:
    assert {entry.name for entry in catalog.load(settings).entries} == NAMES


def test_client_catalog_file_replaces_the_shipped_one(
    settings: Settings, tmp_path: pathlib.Path
) -> None:
    path = write(tmp_path, minimal())
    loaded = catalog.load(settings.replace(client_catalog_file=path))
    assert [entry.name for entry in loaded.entries] == ["acme"]


# -- bad files are start-up errors naming the file and the problem ----------------


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("{not json", "not valid JSON"),
        ([], "JSON object"),
        ({**minimal(), "format": 2}, "'format'"),
        ({**minimal(), "updated": "last week"}, "'updated'"),
        ({**minimal(), "clients": []}, "'clients'"),
        (minimal(name="Acme Corp"), "'name'"),
        (minimal(display_name=""), "'display_name'"),
        (minimal(registers_by=["magic"]), "'registers_by'"),
        (minimal(colour="blue"), "unknown field 'colour'"),
        (minimal(redirect_uris=["https://acme.example/cb?x=1"]), "URL pattern"),
        (minimal(redirect_uris=["https://acme.example:0/cb"]), "1-65535"),
        (minimal(redirect_uris=[]), "needs 'redirect_uris'"),
        (minimal(registers_by=["cimd"], redirect_uris=[]), "needs 'cimd_urls'"),
        (minimal(cimd_urls=["http://acme.example/c.json"]), "'cimd_urls'"),
        (minimal(quirks={"teleports": True}), "unknown quirk 'teleports'"),
        (minimal(quirks={"loopback_any_host": "yes"}), "loopback_any_host"),
        (
            minimal(quirks={"token_endpoint_auth_methods": ["private_key_jwt"]}),
            "token_endpoint_auth_methods",
        ),
        (
            minimal(
                cimd_urls=["https://acme.example/c.json"],
                pinned_document={
                    "url": "https://acme.example/c.json",
                    "reconstructed_on": "2026-12-06",
                    "source": "reconstructed",
                    "document": {
                        "client_id": "https://acme.example/other.json",
                        "redirect_uris": [],
                    },
                },
            ),
            "client_id must equal",
        ),
        (
            minimal(
                pinned_document={
                    "url": "https://acme.example/c.json",
                    "reconstructed_on": "2026-12-06",
                    "source": "reconstructed",
                    "document": {
                        "client_id": "https://acme.example/c.json",
                        "redirect_uris": [],
                    },
                }
            ),
            "exact cimd_urls",
        ),
        (
            minimal(
                cimd_urls=["https://acme.example/c.json"],
                pinned_document={
                    "url": "https://acme.example/c.json",
                    "source": "reconstructed",
                    "document": {"client_id": "https://acme.example/c.json"},
                },
            ),
            "'reconstructed_on'",
        ),
    ],
)
def test_a_bad_catalog_file_is_a_config_error_naming_it(
    settings: Settings, tmp_path: pathlib.Path, data: t.Any, problem: str
) -> None:
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as caught:
        catalog.load(settings.replace(client_catalog_file=path))
    assert f"CLIENT_CATALOG_FILE={path}" in str(caught.value)
    assert problem in str(caught.value)


def test_a_name_used_twice_is_refused(
    settings: Settings, tmp_path: pathlib.Path
) -> None:
    data = minimal()
    data["clients"].append(dict(data["clients"][0]))
    path = write(tmp_path, data)
    with pytest.raises(ConfigError, match="used twice"):
        catalog.load(settings.replace(client_catalog_file=path))


def test_a_missing_file_is_a_config_error(
    settings: Settings, tmp_path: pathlib.Path
) -> None:
    path = str(tmp_path / "nowhere.json")
    with pytest.raises(ConfigError, match="cannot be read"):
        catalog.load(settings.replace(client_catalog_file=path))


def test_an_oversized_file_is_refused(
    settings: Settings, tmp_path: pathlib.Path
) -> None:
    path = write(tmp_path, " " * (catalog.MAX_CATALOG_BYTES + 1))
    with pytest.raises(ConfigError, match="larger than"):
        catalog.load(settings.replace(client_catalog_file=path))


def test_trusted_clients_must_be_catalogued(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="TRUSTED_CLIENTS: 'chatgtp'"):
        catalog.load(settings.replace(trusted_clients=("chatgpt", "chatgtp")))


def test_trusted_clients_are_checked_against_the_operators_file(
    settings: Settings, tmp_path: pathlib.Path
) -> None:
    path = write(tmp_path, minimal())
    with pytest.raises(ConfigError, match="'chatgpt'"):
        catalog.load(
            settings.replace(client_catalog_file=path, trusted_clients=("chatgpt",))
        )


def test_a_bad_catalog_stops_the_app_factory(
    settings: Settings, tmp_path: pathlib.Path, fake_redis: t.Any
) -> None:
    from proxy import create_app

    path = write(tmp_path, "{")
    with pytest.raises(ConfigError):
        create_app(settings.replace(client_catalog_file=path), redis_client=fake_redis)


def test_a_bad_catalog_fails_the_masters_settings_check(
    tmp_path: pathlib.Path,
) -> None:
    """gunicorn's master refuses to start (exit 2) instead of looping workers."""
    import io

    from proxy.cli import settings_check

    err = io.StringIO()
    environ = {
        "PUBLIC_URL": "https://mcp.example.com",
        "OAUTH_ISSUER": "https://idp.example.com",
        "OAUTH_CLIENT_ID": "proxy",
        "OAUTH_CLIENT_SECRET": "secret",
        "CLIENT_CATALOG_FILE": write(tmp_path, "{"),
    }
    assert settings_check.main(environ, err) == 2
    assert "CLIENT_CATALOG_FILE" in err.getvalue()


# -- URL patterns ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "uri", "fits"),
    [
        ("https://a.example/cb", "https://a.example/cb", True),
        ("https://a.example/cb", "https://a.example/cb/", False),
        ("https://a.example/cb", "https://a.example:8443/cb", False),
        ("https://a.example/cb", "https://a.example/cb?x=1", False),
        ("https://a.example/cb", "https://a.example/cb#x", False),
        ("https://a.example/cb", "https://user@a.example/cb", False),
        ("https://a.example/cb", "http://a.example/cb", False),
        ("https://a.example/cb", "https://A.EXAMPLE/cb", True),
        ("https://*/o/mcp:*/cb", "https://chat.example.org/o/mcp:notes/cb", True),
        ("https://*/o/mcp:*/cb", "https://chat.example.org/o/mcp:/cb", False),
        ("https://*/o/mcp:*/cb", "https://chat.example.org/o/mcp:a/b/cb", False),
        ("https://c.example/oauth/*/c.json", "https://c.example/oauth/x/c.json", True),
        ("http://127.0.0.1:*/", "http://127.0.0.1:33418/", True),
        ("http://127.0.0.1:*/", "http://127.0.0.1:33418", True),
        ("http://127.0.0.1:*/", "http://127.0.0.1/", True),
        ("http://127.0.0.1:*/", "http://localhost:33418/", False),
        ("http://localhost:3335-49150/cb", "http://localhost:3335/cb", True),
        ("http://localhost:3335-49150/cb", "http://localhost:49150/cb", True),
        ("http://localhost:3335-49150/cb", "http://localhost:3334/cb", False),
        ("http://localhost:3335-49150/cb", "http://localhost/cb", False),
        ("http://localhost:3335-49150/cb", "http://localhost:99999/cb", False),
        (
            "cursor://anysphere.cursor-mcp/oauth/callback",
            "cursor://anysphere.cursor-mcp/oauth/callback",
            True,
        ),  # noqa: E501
        (
            "cursor://anysphere.cursor-mcp/oauth/callback",
            "cursor://other/oauth/callback",
            False,
        ),  # noqa: E501
    ],
)
def test_url_patterns(pattern: str, uri: str, fits: bool) -> None:
    assert UriPattern.parse(pattern).matches(uri) is fits


def test_only_catalogued_private_use_uris_skip_the_scheme_allowlist() -> None:
    assert shipped().private_use_redirect_uris == {
        "cursor://anysphere.cursor-mcp/oauth/callback"
    }


# -- identify() -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("client_id", "name"),
    [
        ("https://chatgpt.com/oauth/client.json", "chatgpt"),
        ("https://chatgpt.com/oauth/app_123/client.json", "chatgpt"),
        # Codex's exact URL also fits ChatGPT's per-app pattern: exact wins.
        ("https://chatgpt.com/oauth/codex/client.json", "codex"),
        ("https://claude.ai/oauth/mcp-oauth-client-metadata", "claude"),
        ("https://claude.ai/oauth/claude-code-client-metadata", "claude-code"),
        ("https://vscode.dev/oauth/client-metadata.json", "vscode"),
        ("https://opencode.ai/oauth/opencode/client.json", "opencode"),
        ("https://chatgpt.com.evil.example/oauth/client.json", None),
        ("https://evil.example/oauth/mcp-oauth-client-metadata", None),
    ],
)
def test_url_client_ids_are_identified_by_their_url(
    client_id: str, name: str | None
) -> None:
    # The redirect URIs do not matter for a URL client id.
    found = shipped().identify(dcr("https://evil.example/cb", client_id=client_id))
    assert (found.name if found else None) == name


@pytest.mark.parametrize(
    ("redirect_uris", "name"),
    [
        (
            (
                "cursor://anysphere.cursor-mcp/oauth/callback",
                "https://www.cursor.com/agents/mcp/oauth/callback",
                "http://localhost:8787/callback",
            ),
            "cursor",
        ),
        (("https://chatgpt.com/connector_platform_oauth_redirect",), "chatgpt"),
        (("https://chatgpt.com/connector/oauth/cb_123",), "chatgpt"),
        (("http://127.0.0.1:41234/callback/AbCdEfGhIjKl",), "codex"),
        (("https://claude.ai/api/mcp/auth_callback",), "claude"),
        (("http://127.0.0.1:33418/", "https://vscode.dev/redirect"), "vscode"),
        (("https://grok.com/connectors-oauth-exchange-code/",), "grok"),
        (("http://127.0.0.1:50123/oauth_callback",), "goose"),
        (("https://ai.example.org/oauth/clients/mcp:notes/callback",), "open-webui"),
        (
            (
                "http://localhost:6274/oauth/callback",
                "http://localhost:6274/oauth/callback/debug",
            ),
            "mcp-inspector",
        ),
        # Claude Code and opencode register the same callbacks: neither.
        (("http://localhost:5678/callback",), None),
        # One URI of another client spoils the match: ALL must fit.
        (
            (
                "https://chatgpt.com/connector_platform_oauth_redirect",
                "https://evil.example/cb",
            ),
            None,
        ),
        (("https://evil.example/cb",), None),
        ((), None),
    ],
)
def test_dcr_clients_are_identified_only_when_all_redirect_uris_fit(
    redirect_uris: tuple[str, ...], name: str | None
) -> None:
    found = shipped().identify(dcr(*redirect_uris))
    assert (found.name if found else None) == name


# -- the trust decision (TRUSTED_CLIENTS) -----------------------------------------

CHATGPT_CIMD = dcr(
    "https://chatgpt.com/connector_platform_oauth_redirect",
    client_id="https://chatgpt.com/oauth/app_1/client.json",
)
CHATGPT_LOOKALIKE = dcr("https://chatgpt.com/connector_platform_oauth_redirect")


@pytest.mark.parametrize(
    ("client", "verified", "trusted", "skips"),
    [
        (CHATGPT_CIMD, True, ("chatgpt", "claude"), True),
        (CHATGPT_CIMD, True, ("claude",), False),
        (CHATGPT_CIMD, True, (), False),
        # The same record, but its identity was not proven: consent.
        (CHATGPT_CIMD, False, ("chatgpt",), False),
        # A DCR registration imitating ChatGPT's redirect URIs: consent.
        (CHATGPT_LOOKALIKE, False, ("chatgpt",), False),
        # A static client with ChatGPT's redirect URIs, named by the operator.
        (CHATGPT_LOOKALIKE, True, ("chatgpt",), True),
        (dcr("https://evil.example/cb"), True, ("chatgpt",), False),
    ],
)
def test_only_a_verified_trusted_client_skips_consent(
    client: ClientRecord, verified: bool, trusted: tuple[str, ...], skips: bool
) -> None:
    decision = shipped().skips_consent(client, verified=verified, trusted=trusted)
    assert decision is skips


# -- pinned fallback copies -------------------------------------------------------


def test_a_pinned_document_is_a_valid_looking_copy_for_its_exact_url() -> None:
    url = "https://claude.ai/oauth/mcp-oauth-client-metadata"
    document = shipped().pinned_document(url)
    assert document is not None
    assert document["client_id"] == url
    assert "https://claude.ai/api/mcp/auth_callback" in document["redirect_uris"]
    assert document["token_endpoint_auth_method"] == "none"


@pytest.mark.parametrize(
    "url",
    [
        "https://chatgpt.com/oauth/app_1/client.json",  # catalogued, not pinned
        "https://claude.ai/oauth/mcp-oauth-client-metadata/",
        "https://evil.example/client.json",
    ],
)
def test_no_pinned_document_for_other_urls(url: str) -> None:
    assert shipped().pinned_document(url) is None


def test_a_pinned_document_is_handed_out_as_a_copy() -> None:
    loaded = shipped()
    url = "https://vscode.dev/oauth/client-metadata.json"
    first = loaded.pinned_document(url)
    assert first is not None
    first["redirect_uris"].append("https://evil.example/cb")
    again = loaded.pinned_document(url)
    assert again is not None
    assert "https://evil.example/cb" not in again["redirect_uris"]
