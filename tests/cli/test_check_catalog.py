"""`python -m proxy check`: which catalogued clients this configuration admits."""

from __future__ import annotations

import io
import json
import pathlib
import re
import typing as t

import pytest

from proxy.cli import check
from tests.upstream.standins import OIDCStandIn

PUBLIC = "https://mcp.example.com"


def env_for(issuer: str, **extra: str) -> dict[str, str]:
    return {
        "PUBLIC_URL": PUBLIC,
        "OAUTH_ISSUER": issuer,
        "OAUTH_CLIENT_ID": "proxy-client",
        "OAUTH_CLIENT_SECRET": "proxy-secret",
        **extra,
    }


_CLIENT = re.compile(r"[^(]+ \(([a-z0-9-]+)\)")


def report_for(httpserver: t.Any, **extra: str) -> check.Report:
    idp = OIDCStandIn(httpserver)
    return check.run(check.Settings.from_env(env_for(idp.issuer, **extra)))


def findings(httpserver: t.Any, **extra: str) -> dict[str, check.Finding]:
    """The catalog's per-client findings, by the client's catalog name."""
    by_client = {}
    for finding in report_for(httpserver, **extra).findings:
        found = _CLIENT.match(finding.message)
        if finding.code.startswith("client_") and found:
            by_client[found.group(1)] = finding
    return by_client


def test_by_default_every_catalogued_client_is_admitted(httpserver: t.Any) -> None:
    found = findings(httpserver)
    assert len(found) == 12
    assert all(f.code == "client_admitted" for f in found.values())
    assert "by CIMD" in found["claude"].message
    assert "by DCR" in found["cursor"].message


def test_pinned_copies_are_announced_with_their_date(httpserver: t.Any) -> None:
    found = findings(httpserver)
    assert "pinned copy (reconstructed 2026-12-06)" in found["claude"].message
    assert "pinned" not in found["chatgpt"].message


def test_without_dcr_the_dcr_only_clients_cannot_connect(httpserver: t.Any) -> None:
    found = findings(httpserver, OAUTH_USE_DYNAMIC_REGISTRATION="false")
    assert found["cursor"].code == "client_not_admitted"
    assert "OAUTH_USE_DYNAMIC_REGISTRATION=false" in found["cursor"].message
    assert found["claude"].code == "client_admitted"
    assert found["claude"].level == check.OK


def test_without_cimd_no_pinned_copy_is_announced(httpserver: t.Any) -> None:
    found = findings(httpserver, CIMD_ENABLED="false")
    assert found["claude"].code == "client_admitted"
    assert "CIMD_ENABLED=false" in found["claude"].message
    assert "pinned" not in found["claude"].message


def test_a_denied_domain_is_named(httpserver: t.Any) -> None:
    found = findings(
        httpserver,
        CIMD_DENIED_DOMAINS="claude.ai",
        OAUTH_USE_DYNAMIC_REGISTRATION="false",
    )
    assert found["claude"].code == "client_not_admitted"
    assert "claude.ai is not allowed" in found["claude"].message
    assert found["vscode"].code == "client_admitted"


def test_a_static_client_admits_its_catalogued_client(
    httpserver: t.Any, tmp_path: pathlib.Path
) -> None:
    clients = tmp_path / "clients.json"
    clients.write_text(
        json.dumps(
            [
                {
                    "client_id": "cursor-static",
                    "client_name": "Cursor",
                    "redirect_uris": [
                        "https://www.cursor.com/agents/mcp/oauth/callback",
                        "http://localhost:8787/callback",
                    ],
                }
            ]
        )
    )
    found = findings(
        httpserver,
        OAUTH_USE_DYNAMIC_REGISTRATION="false",
        STATIC_CLIENTS_FILE=str(clients),
    )
    assert found["cursor"].code == "client_admitted"
    assert "as static client cursor-static" in found["cursor"].message


def test_a_catalogued_scheme_the_operator_file_only_allows_by_pattern(
    httpserver: t.Any, tmp_path: pathlib.Path
) -> None:
    """A private-use pattern with a wildcard needs ALLOWED_REDIRECT_SCHEMES."""
    data = {
        "format": 1,
        "updated": "2026-12-06",
        "clients": [
            {
                "name": "acme",
                "display_name": "Acme",
                "registers_by": ["dcr"],
                "redirect_uris": ["acme://*/callback"],
            }
        ],
    }
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(data))
    found = findings(httpserver, CLIENT_CATALOG_FILE=str(path))
    assert found["acme"].code == "client_not_admitted"
    assert "ALLOWED_REDIRECT_SCHEMES=acme" in found["acme"].message
    allowed = findings(
        httpserver, CLIENT_CATALOG_FILE=str(path), ALLOWED_REDIRECT_SCHEMES="acme"
    )
    assert allowed["acme"].code == "client_admitted"


def test_trusted_clients_are_reported(httpserver: t.Any) -> None:
    """ChatGPT can prove itself by CIMD; Cursor (DCR only) never can."""
    report = report_for(httpserver, TRUSTED_CLIENTS="chatgpt,cursor")
    trusted = [f for f in report.findings if f.code.startswith("trusted_client")]
    assert [(f.level, f.code) for f in trusted] == [
        (check.OK, "trusted_client"),
        (check.WARN, "trusted_client_unverifiable"),
    ]
    assert trusted[0].message.startswith("ChatGPT")
    assert "cursor" in trusted[1].message


@pytest.mark.parametrize(
    "extra",
    [{"TRUSTED_CLIENTS": "chatgtp"}, {"CLIENT_CATALOG_FILE": "/nonexistent.json"}],
)
def test_a_bad_catalog_setting_is_a_config_failure(extra: dict[str, str]) -> None:
    out = io.StringIO()
    assert check.main(env_for("https://idp.example.com", **extra), out) == 2
    assert "[config]" in out.getvalue()


def _own_catalog(tmp_path: pathlib.Path) -> str:
    entry = {
        "name": "in-house",
        "display_name": "In-house agent",
        "registers_by": ["cimd"],
        "cimd_urls": ["https://agents.example.com/client.json"],
    }
    path = tmp_path / "catalog.json"
    path.write_text(
        json.dumps({"format": 1, "updated": "2026-12-06", "clients": [entry]})
    )
    return str(path)


def _hint(**extra: str) -> str:
    settings = check.Settings.from_env(env_for("https://idp.example.com", **extra))
    lines = check.instructions(settings).splitlines()
    return "\n".join(line for line in lines if "TRUSTED_CLIENTS" in line)


def test_the_trusted_clients_hint_names_only_clients_of_this_catalog(
    tmp_path: pathlib.Path,
) -> None:
    """Following the hint must not stop the proxy from starting: with an
    operator's catalog lacking chatgpt and claude, TRUSTED_CLIENTS=chatgpt,claude
    is a ConfigError at start-up."""
    assert _hint().endswith("TRUSTED_CLIENTS=chatgpt,claude")
    assert _hint(CLIENT_CATALOG_FILE=_own_catalog(tmp_path)) == ""


@pytest.mark.parametrize(
    "extra", [{"CIMD_ENABLED": "false"}, {"TRUSTED_CLIENTS": "claude"}]
)
def test_no_trusted_clients_hint_where_it_would_change_nothing(
    extra: dict[str, str],
) -> None:
    assert _hint(**extra) == ""


def test_trusted_redirect_uris_warn_that_trusted_clients_is_better(
    httpserver: t.Any,
) -> None:
    """J15: the setting no longer covers DCR copies; check says so."""
    report = report_for(
        httpserver,
        TRUSTED_REDIRECT_URIS="https://chatgpt.com/connector_platform_oauth_redirect",
    )
    warning = next(f for f in report.findings if f.code == "trusted_redirect_uris")
    assert warning.level == check.WARN
    assert "DCR registration" in warning.message
    assert "TRUSTED_CLIENTS" in warning.message
    assert "trusted_redirect_uris" not in report_for(httpserver).codes()
