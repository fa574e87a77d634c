"""The benchmark still runs: `python -m bench --quick --no-peer` produces figures.

Asserts that every phase ran and reported numbers, never how fast anything was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
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
    steps = doc["redis_per_step"]
    for name in ("register", "authorize", "consent", "callback", "token_code"):
        assert steps[name]["samples"] > 0
    assert doc["memory"]["client"]["bytes_per_client"] > 0
    assert doc["memory"]["grant"]["bytes_per_grant"] > 0
    assert doc["gateway"]["calls"] > 0
    assert doc["gateway"]["sse_gateway_arrivals_ms"]
    assert doc["targets"]
