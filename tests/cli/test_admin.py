"""`python -m proxy admin`: each command on fakeredis and on a real redis-server."""

from __future__ import annotations

import io
import json
import time
import typing as t
import uuid
from pathlib import Path

import pytest
import redis

from proxy.cli import admin
from proxy.cli import demo
from proxy.clients.documents import CachedDocument
from proxy.observability.events import Event
from proxy.observability.events import Events
from proxy.store import Store
from proxy.store.documents import document_id
from proxy.store.grant_index import subject_hash
from proxy.store.records import ClientRecord
from proxy.store.records import Grant

NOW = int(time.time())
DAY = 86400
STATIC_ID = "static-client"
CIMD_ID = "https://agent.example.com/client.json"
UNSEEN_CIMD_ID = "https://other.example.com/client.json"


class Run:
    """One admin invocation's exit code, output and events."""

    def __init__(self, code: int, output: str, events: list[Event]) -> None:
        self.code = code
        self.output = output
        self.events = events

    def json(self) -> t.Any:
        return json.loads(self.output)

    def actions(self) -> list[dict[str, t.Any]]:
        return [e.fields for e in self.events if e.name == "admin.action"]


class Cli:
    """Runs `admin.main` against one store, as the operator would."""

    def __init__(self, store: Store, environ: dict[str, str]) -> None:
        self.store = store
        self.environ = environ

    def __call__(self, *argv: str) -> Run:
        out = io.StringIO()
        seen: list[Event] = []
        hub = Events()
        hub.subscribe(seen.append)
        code = admin.main(
            list(argv),
            self.environ,
            out,
            redis_client=self.store.redis,
            events=hub,
        )
        return Run(code, out.getvalue(), seen)


@pytest.fixture
def store(redis_client: redis.Redis) -> Store:
    return Store(redis_client, f"adm-{uuid.uuid4().hex[:8]}:")


@pytest.fixture
def static_file(tmp_path: Path) -> Path:
    path = tmp_path / "static.json"
    path.write_text(
        json.dumps(
            [
                {
                    "client_id": STATIC_ID,
                    "client_name": "Ops Console",
                    "redirect_uris": ["https://ops.example.com/cb"],
                }
            ]
        )
    )
    return path


@pytest.fixture
def cli(store: Store, static_file: Path) -> Cli:
    return Cli(
        store,
        {
            "REDIS_KEY_PREFIX": store.keys.prefix,
            "STATIC_CLIENTS_FILE": str(static_file),
        },
    )


def _register(store: Store, client_id: str = "mcp_dcr1", ttl: int = 3600) -> None:
    record = ClientRecord(
        client_id=client_id,
        redirect_uris=("http://127.0.0.1:5555/callback",),
        token_endpoint_auth_method="none",
        grant_types=("authorization_code", "refresh_token"),
        client_id_issued_at=NOW - 60,
        metadata={"client_name": "Desktop Agent"},
    )
    assert store.create_client(record, ttl=ttl)


def _cache_document(store: Store, client_id: str = CIMD_ID) -> None:
    body = {
        "client_id": client_id,
        "client_name": "Web Agent",
        "redirect_uris": ["https://agent.example.com/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
    }
    cached = CachedDocument(body, NOW, NOW + 300, NOW + 600)
    store.documents.write(
        document_id("client_metadata", client_id), cached.to_json(), 600
    )


def _grant(
    store: Store,
    grant_id: str,
    *,
    client_id: str = "mcp_dcr1",
    sub: str = "alice",
    used: int | None = None,
) -> Grant:
    grant = Grant(
        grant_id=grant_id,
        client_id=client_id,
        sub=sub,
        claims={"email": f"{sub}@example.com"},
        scope="mcp",
        resource="https://mcp.example.com/mcp",
        redirect_uri="http://127.0.0.1:5555/callback",
        code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        code_hash="c0de" * 16,
        code_exp=NOW + 120,
        created_at=NOW,
        expires_at=NOW + 90 * DAY,
        upstream="SEALED-UPSTREAM",
    )
    store.create_grant(grant, ttl=3600)
    if used is not None:
        result = store.redeem_code(
            grant_id,
            code_hash="c0de" * 16,
            now=used,
            tolerance=0,
            refresh_hash="feed" * 16,
            ttl=3600,
        )
        assert result.value == "OK"
    return grant


def _alive(store: Store, grant_id: str) -> bool:
    return store.grant_exists(grant_id)


# -- clients list / show ---------------------------------------------------------------


def test_clients_list_shows_every_kind_with_grant_counts_and_last_use(
    cli: Cli, store: Store
) -> None:
    _register(store)
    _cache_document(store)
    _grant(store, "g1", used=NOW - 100)
    _grant(store, "g2", used=NOW - 50)
    _grant(store, "g3", client_id=UNSEEN_CIMD_ID)
    run = cli("clients", "list", "--json")
    assert run.code == 0
    rows = {row["client_id"]: row for row in run.json()}
    assert {cid: rows[cid]["kind"] for cid in rows} == {
        STATIC_ID: "static",
        "mcp_dcr1": "dcr",
        CIMD_ID: "cimd",
        UNSEEN_CIMD_ID: "cimd",
    }
    assert rows["mcp_dcr1"]["grants"] == 2
    assert rows["mcp_dcr1"]["last_used_at"] == NOW - 50
    assert rows["mcp_dcr1"]["name"] == "Desktop Agent"
    assert rows["mcp_dcr1"]["redirect_hosts"] == ["127.0.0.1"]
    assert rows[CIMD_ID]["name"] == "Web Agent"
    assert rows[UNSEEN_CIMD_ID]["grants"] == 1
    assert rows[STATIC_ID]["redirect_hosts"] == ["ops.example.com"]
    assert all(row["status"] == "enabled" for row in rows.values())


def test_clients_list_prints_a_table_by_default(cli: Cli, store: Store) -> None:
    _register(store)
    run = cli("clients", "list")
    assert run.code == 0
    header, *lines = run.output.splitlines()
    assert header.split()[:3] == ["KIND", "CLIENT", "ID"]
    assert any(line.startswith("dcr") and "mcp_dcr1" in line for line in lines)
    assert any(line.startswith("static") and STATIC_ID in line for line in lines)


def test_clients_show_gives_the_details_and_the_grants(cli: Cli, store: Store) -> None:
    _register(store)
    _grant(store, "g1", used=NOW - 10)
    run = cli("clients", "show", "mcp_dcr1", "--json")
    assert run.code == 0
    shown = run.json()
    assert shown["kind"] == "dcr"
    assert shown["auth_method"] == "none"
    assert 0 < shown["expires_in"] <= 3600
    assert [g["grant_id"] for g in shown["grant_list"]] == ["g1"]
    assert shown["grant_list"][0]["email"] == "alice@example.com"
    table = cli("clients", "show", "mcp_dcr1").output
    assert "Desktop Agent" in table
    assert "g1" in table


def test_clients_show_of_an_unknown_client_is_exit_1(cli: Cli) -> None:
    assert cli("clients", "show", "mcp_nobody").code == 1


def test_nothing_secret_is_printed(cli: Cli, store: Store) -> None:
    _register(store)
    _grant(store, "g1", used=NOW)
    outputs = [
        cli(*argv).output
        for argv in (
            ("clients", "list"),
            ("clients", "show", "mcp_dcr1", "--json"),
            ("grants", "list", "--all", "--json"),
            ("grants", "list", "--user", "alice"),
        )
    ]
    for output in outputs:
        assert "c0de" not in output
        assert "feed" not in output
        assert "SEALED-UPSTREAM" not in output


# -- clients disable / enable / delete -------------------------------------------------


def test_disabling_a_client_marks_it_and_ends_its_grants(
    cli: Cli, store: Store
) -> None:
    _register(store)
    _grant(store, "g1", used=NOW)
    _grant(store, "g2")
    _grant(store, "other", client_id=STATIC_ID)
    run = cli("clients", "disable", "mcp_dcr1")
    assert run.code == 0
    assert store.disabled_clients.is_disabled("mcp_dcr1")
    assert not _alive(store, "g1")
    assert not _alive(store, "g2")
    assert _alive(store, "other")
    assert store.grants_of_user("alice")[0].grant_id == "other"
    assert run.actions() == [
        {
            "action": "clients.disable",
            "target": "mcp_dcr1",
            "count": 2,
            "client_id": "mcp_dcr1",
        }
    ]
    reasons = [e.fields["reason"] for e in run.events if e.name == "grant.revoked"]
    assert reasons == ["admin", "admin"]
    listed = {r["client_id"]: r for r in cli("clients", "list", "--json").json()}
    assert listed["mcp_dcr1"]["status"] == "disabled"


def test_a_registered_clients_mark_outlives_any_slide_of_its_registration(
    store: Store,
) -> None:
    """A token request in flight may slide the registration to the full
    CLIENT_TTL_SECONDS once: the mark must not lapse before the registration."""
    _register(store, ttl=500)
    cli = Cli(
        store,
        {"REDIS_KEY_PREFIX": store.keys.prefix, "CLIENT_TTL_SECONDS": "3600"},
    )
    assert cli("clients", "disable", "mcp_dcr1").code == 0
    key = store.disabled_clients.key_of("mcp_dcr1")
    assert 3600 < store.redis.ttl(key) <= 3600 + 60
    assert "mcp_dcr1" not in key  # the id is hashed in the key name


def test_a_registration_that_never_expires_keeps_its_mark(store: Store) -> None:
    _register(store, ttl=0)
    cli = Cli(store, {"REDIS_KEY_PREFIX": store.keys.prefix, "CLIENT_TTL_SECONDS": "0"})
    assert cli("clients", "disable", "mcp_dcr1").code == 0
    assert store.redis.ttl(store.disabled_clients.key_of("mcp_dcr1")) == -1


@pytest.mark.parametrize("client_id", [STATIC_ID, CIMD_ID, UNSEEN_CIMD_ID])
def test_static_and_url_clients_stay_disabled_until_enabled(
    cli: Cli, store: Store, client_id: str
) -> None:
    assert cli("clients", "disable", client_id).code == 0
    assert store.redis.ttl(store.disabled_clients.key_of(client_id)) == -1
    run = cli("clients", "enable", client_id)
    assert run.code == 0
    assert not store.disabled_clients.is_disabled(client_id)
    assert run.actions()[0]["action"] == "clients.enable"


def test_disabling_an_unknown_registered_client_is_exit_1(
    cli: Cli, store: Store
) -> None:
    run = cli("clients", "disable", "mcp_nobody")
    assert run.code == 1
    assert not store.disabled_clients.is_disabled("mcp_nobody")
    assert run.actions() == []


def test_enabling_a_client_that_was_not_disabled_changes_nothing(
    cli: Cli, store: Store
) -> None:
    _register(store)
    run = cli("clients", "enable", "mcp_dcr1", "--json")
    assert run.code == 0
    assert run.json()["count"] == 0
    assert run.actions() == []
    assert cli("clients", "enable", "mcp_nobody").code == 1


def test_disable_with_scan_ends_grants_the_index_never_saw(
    cli: Cli, store: Store
) -> None:
    """Grants created before the indexes existed are found by walking them all."""
    _register(store)
    legacy = _grant(store, "legacy")
    store.grant_index.forget(legacy)
    assert cli("clients", "disable", "mcp_dcr1").code == 0
    assert _alive(store, "legacy")
    assert cli("clients", "disable", "mcp_dcr1", "--scan").code == 0
    assert not _alive(store, "legacy")


def test_deleting_a_registered_client_removes_it_and_its_grants(
    cli: Cli, store: Store
) -> None:
    _register(store)
    assert store.limits.reserve_client("mcp_dcr1", NOW + 100, max_clients=10)
    _grant(store, "g1", used=NOW)
    run = cli("clients", "delete", "mcp_dcr1")
    assert run.code == 0
    assert store.load_client("mcp_dcr1") is None
    assert not _alive(store, "g1")
    assert store.redis.zscore(store.keys.client_index(), "mcp_dcr1") is None
    assert not store.redis.exists(store.disabled_clients.key_of("mcp_dcr1"))
    assert run.actions()[0] == {
        "action": "clients.delete",
        "target": "mcp_dcr1",
        "count": 1,
        "client_id": "mcp_dcr1",
    }
    assert cli("clients", "show", "mcp_dcr1").code == 1


@pytest.mark.parametrize("client_id", [STATIC_ID, CIMD_ID])
def test_only_a_registered_client_can_be_deleted(cli: Cli, client_id: str) -> None:
    run = cli("clients", "delete", client_id)
    assert run.code == 2
    assert run.actions() == []


def test_deleting_an_unknown_client_is_exit_1(cli: Cli) -> None:
    assert cli("clients", "delete", "mcp_nobody").code == 1


# -- grants ----------------------------------------------------------------------------


def test_grants_list_by_user_by_client_and_all(cli: Cli, store: Store) -> None:
    _grant(store, "a1")
    _grant(store, "a2", client_id="mcp_other")
    _grant(store, "b1", sub="bob")

    def ids(*argv: str) -> list[str]:
        run = cli("grants", "list", *argv, "--json")
        assert run.code == 0
        return sorted(row["grant_id"] for row in run.json())

    assert ids("--user", "alice") == ["a1", "a2"]
    assert ids("--client", "mcp_dcr1") == ["a1", "b1"]
    assert ids("--all") == ["a1", "a2", "b1"]
    assert ids("--user", "carol") == []


def test_grants_list_shows_what_a_grant_allows(cli: Cli, store: Store) -> None:
    _grant(store, "a1", used=NOW)
    [row] = cli("grants", "list", "--user", "alice", "--json").json()
    assert row == {
        "grant_id": "a1",
        "client_id": "mcp_dcr1",
        "sub": "alice",
        "email": "alice@example.com",
        "scope": "mcp",
        "resource": "https://mcp.example.com/mcp",
        "created_at": NOW,
        "last_used_at": NOW,
    }
    table = cli("grants", "list", "--user", "alice").output
    assert table.splitlines()[0].split()[:2] == ["GRANT", "CLIENT"]


def test_grants_list_with_scan_finds_unindexed_grants(cli: Cli, store: Store) -> None:
    store.grant_index.forget(_grant(store, "legacy"))
    assert cli("grants", "list", "--user", "alice", "--json").json() == []
    run = cli("grants", "list", "--user", "alice", "--scan", "--json")
    assert [row["grant_id"] for row in run.json()] == ["legacy"]


def test_revoking_one_grant(cli: Cli, store: Store) -> None:
    _grant(store, "g1")
    _grant(store, "g2")
    run = cli("grants", "revoke", "g1")
    assert run.code == 0
    assert not _alive(store, "g1")
    assert _alive(store, "g2")
    assert run.actions() == [
        {
            "action": "grants.revoke",
            "target": "g1",
            "count": 1,
            "client_id": "mcp_dcr1",
            "sub": "alice",
        }
    ]
    assert cli("grants", "revoke", "g1").code == 1


def test_offboarding_a_user_revokes_all_their_grants_and_no_one_elses(
    cli: Cli, store: Store
) -> None:
    _grant(store, "a1", used=NOW)
    _grant(store, "a2", client_id=CIMD_ID)
    _grant(store, "b1", sub="bob")
    run = cli("grants", "revoke", "--user", "alice", "--json")
    assert run.code == 0
    assert run.json()["count"] == 2
    assert [_alive(store, g) for g in ("a1", "a2", "b1")] == [False, False, True]
    assert store.redis.zcard(store.keys.user_grants(subject_hash("alice"))) == 0
    assert run.actions()[0] == {
        "action": "grants.revoke_user",
        "target": "alice",
        "count": 2,
        "sub": "alice",
    }


def test_revoking_every_grant_needs_yes(cli: Cli, store: Store) -> None:
    _grant(store, "a1")
    _grant(store, "b1", sub="bob")
    refused = cli("grants", "revoke", "--all")
    assert refused.code == 2
    assert _alive(store, "a1")
    assert refused.actions() == []
    run = cli("grants", "revoke", "--all", "--yes")
    assert run.code == 0
    assert not _alive(store, "a1")
    assert not _alive(store, "b1")
    assert run.actions()[0]["count"] == 2


# -- stats -----------------------------------------------------------------------------


def test_stats_counts_clients_grants_and_keys(cli: Cli, store: Store) -> None:
    _register(store)
    _cache_document(store)
    _grant(store, "g1")
    _grant(store, "g2", sub="bob")
    cli("clients", "disable", CIMD_ID)
    report = cli("stats", "--json").json()
    assert report["clients"] == {"static": 1, "dcr": 1, "cimd": 1, "disabled": 1}
    assert report["live_grants"] == 2
    assert report["keys"]["grant"] == 2
    assert report["keys"]["grants:user"] == 2
    assert report["keys"]["grants:client"] == 1
    assert report["keys"]["client"] == 1
    text = cli("stats").output
    assert "live grants:  2" in text
    assert "redis memory:" in text


def test_stats_reads_redis_memory_settings(real_redis: redis.Redis) -> None:
    store = Store(real_redis, f"adm-{uuid.uuid4().hex[:8]}:")
    old = real_redis.config_get("maxmemory-policy")["maxmemory-policy"]
    real_redis.config_set("maxmemory-policy", "noeviction")
    try:
        memory = Cli(store, {"REDIS_KEY_PREFIX": store.keys.prefix})(
            "stats", "--json"
        ).json()["memory"]
    finally:
        real_redis.config_set("maxmemory-policy", old)
    assert memory["policy"] == "noeviction"
    assert memory["used_bytes"] > 0


# -- usage and configuration -----------------------------------------------------------


def test_without_redis_url_it_is_a_configuration_error() -> None:
    out = io.StringIO()
    assert admin.main(["stats"], {}, out) == 2
    assert "REDIS_URL" in out.getvalue()


def test_an_unreachable_redis_is_exit_2() -> None:
    out = io.StringIO()
    environ = {"REDIS_URL": "redis://127.0.0.1:1/0", "AUDIT_LOG": "false"}
    assert admin.main(["stats"], environ, out) == 2


@pytest.mark.parametrize(
    "argv",
    [[], ["clients"], ["clients", "disable"], ["grants", "list"], ["bogus"]],
)
def test_bad_usage_is_exit_2(cli: Cli, argv: list[str]) -> None:
    assert cli(*argv).code == 2


def test_python_m_proxy_admin_runs_the_admin_tool(
    redis_url: str,
    real_redis: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = Store(real_redis, f"adm-{uuid.uuid4().hex[:8]}:")
    _grant(store, "g1")
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("REDIS_KEY_PREFIX", store.keys.prefix)
    assert demo.main(["admin", "grants", "list", "--all", "--json"]) == 0
    assert [row["grant_id"] for row in json.loads(capsys.readouterr().out)] == ["g1"]


def test_changes_are_written_to_the_audit_log(
    store: Store, capfd: pytest.CaptureFixture[str]
) -> None:
    """Without an injected hub, the CLI builds the app's: audit lines on stderr."""
    _grant(store, "g1")
    out = io.StringIO()
    environ = {"REDIS_KEY_PREFIX": store.keys.prefix}
    assert (
        admin.main(
            ["grants", "revoke", "--user", "alice"],
            environ,
            out,
            redis_client=store.redis,
        )
        == 0
    )
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines()]
    actions = [line for line in lines if line.get("event") == "admin.action"]
    assert len(actions) == 1
    assert actions[0]["count"] == 1
    assert actions[0]["action"] == "grants.revoke_user"
