"""The benchmark still runs: `python -m bench --quick --no-peer` produces figures.

Asserts that every phase ran and reported numbers, never how fast anything was;
round-trip and fetch counts, which do not depend on the machine, are checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_produces_figures(tmp_path: Path) -> None:
    pytest.importorskip("aiohttp", reason="pip install -e '.[bench]'")
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is required in CI")
        pytest.skip("redis-server is not installed")
    output = tmp_path / "latest.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-peer", "--workers", "2"]
        + ["--output", str(output)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Per-endpoint loops" in done.stdout
    doc = json.loads(output.read_text())
    assert doc["meta"]["quick"] is True
    for name in ("metadata", "jwks", "register", "authorize", "token_code"):
        row = doc["endpoints"][name]
        assert row["proxy"]["requests"] > 0
        assert row["floor"]["requests"] > 0
        assert row["ratio"] is not None
    for name in ("token_refresh", "gateway_check"):
        assert doc["endpoints"][name]["proxy"]["requests"] > 0
    assert doc["flows"]["proxy"]["requests"] > 0
    assert "skipped" in doc["flows"]["peer"]
    assert doc["flows"]["proxy_oauth_only"]["requests"] > 0
    # Observability's cost on whole flows: every turn, and the CPU of both.
    cost = doc["flows"]["observability"]
    assert len(cost["slower_per_turn"]) == cost["slices"] == 8
    # Each turn ran on connections it balanced over the workers first.
    assert len(cost["worker_splits"]) == 8
    assert all(set(turn) == {"on", "off"} for turn in cost["worker_splits"])
    sides = [side for turn in cost["worker_splits"] for side in turn.values()]
    # The balancing flows ran, and with ss the split they left was read.
    assert all(side["passes"] >= 1 and side["flows"] > 0 for side in sides)
    if shutil.which("ss"):
        assert all(
            side["split"] is not None and sum(side["split"]) >= 3 for side in sides
        )
        assert cost["unknown_splits"] == 0
        assert "turns on an uneven split" in done.stdout
    assert isinstance(cost["uneven_turns"], int)
    assert cost["server_cpu_ms_per_flow_on"] > 0
    assert cost["server_cpu_ms_per_flow_off"] > 0
    assert cost["cpu_more"] is not None
    assert "proxy CPU per flow" in done.stdout
    steps = doc["redis_per_step"]
    for name in ("register", "authorize", "consent", "callback", "token_code"):
        assert steps[name]["samples"] > 0
    assert doc["memory"]["client"]["bytes_per_client"] > 0
    assert doc["memory"]["grant"]["bytes_per_grant"] > 0
    assert doc["gateway"]["calls"] > 0
    # The guarded gateway (policy, tool scopes, identity JWT) answered too.
    assert doc["gateway"]["guarded"]["calls"] == doc["gateway"]["calls"]
    assert doc["gateway"]["guarded"]["added_p50_ms"] is not None
    # The floor's relay answered, and each gateway is compared with it.
    assert doc["gateway"]["floor"]["calls"] == doc["gateway"]["calls"]
    assert doc["gateway"]["over_floor_p50_ms"] is not None
    assert doc["gateway"]["guarded"]["over_floor_p50_ms"] is not None
    # ... and the policed one (policy and scopes, identity in headers).
    assert doc["gateway"]["policed"]["calls"] == doc["gateway"]["calls"]
    assert doc["gateway"]["policed"]["over_floor_p50_ms"] is not None
    # The identity step, timed back to back and after a wait, each way.
    identity = doc["gateway"]["identity_jwt_us"]
    for mode in ("headers", "jwt"):
        for label in ("", "_paused"):
            assert identity[f"{mode}{label}_p50_us"] > 0
    assert doc["gateway"]["sse_gateway_arrivals_ms"]
    assert doc["targets"]

    # The CIMD and private_key_jwt flows ran, beside DCR's in the same table.
    assert "Complete OAuth flows by client kind" in done.stdout
    for kind in ("cimd", "private_key_jwt"):
        assert doc["flows"][f"proxy_{kind}_oauth_only"]["requests"] > 0
        kind_steps = doc["redis_per_step_by_kind"][kind]
        assert "register" not in kind_steps  # a URL client id registers nothing
        for name in ("authorize", "consent", "callback", "token_code"):
            assert kind_steps[name]["samples"] > 0
    # Every worker read the documents from the shared cache: one fetch each
    # over the whole run (warm-up, probes and flows under load).
    assert doc["document_fetches"] == {
        "cimd": {"/bench/cimd-client.json": 1},
        "private_key_jwt": {
            "/bench/private-key-jwt-client.json": 1,
            "/bench/private-key-jwt-jwks.json": 1,
        },
    }
    _assert_round_trips(doc)


def _assert_round_trips(doc: dict[str, t.Any]) -> None:
    """Round trips are deterministic: a cached document costs at most one more
    per step than a registered client, and private_key_jwt at most two more at
    the token endpoint (its cached key set, its spent jti)."""
    dcr = doc["redis_per_step"]
    cimd = doc["redis_per_step_by_kind"]["cimd"]
    jwt = doc["redis_per_step_by_kind"]["private_key_jwt"]
    for name in ("authorize", "consent", "callback", "token_code", "token_refresh"):
        assert cimd[name]["round_trips"] <= dcr[name]["round_trips"] + 1, name
    for name in ("authorize", "consent", "callback"):
        assert jwt[name]["round_trips"] <= cimd[name]["round_trips"], name
    for name in ("token_code", "token_refresh"):
        assert jwt[name]["round_trips"] <= cimd[name]["round_trips"] + 2, name
