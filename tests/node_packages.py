"""npm packages for the tests that drive the MCP TypeScript SDK (e2e, browser).

Each package directory in the tests (`tests/e2e/ts_client`, `tests/browser/ts_page`)
commits a package.json and a package-lock.json. `installed()` runs `npm ci`
from them into a cache directory outside the repository, keyed by their hash,
so a second run installs nothing and the source tree never holds node_modules.
Without node or npm a test skips, except under CI, where it fails: `.ci/run`
installs them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

NPM_TIMEOUT_SECONDS = 300
#: fetch and ES modules without flags.
NODE_MIN_MAJOR = 18


def require(binary: str) -> str:
    """The path of ``binary``, or a skip (a failure under CI) saying why."""
    path = shutil.which(binary)
    if path is not None:
        return path
    reason = f"{binary} is not installed (Node.js 18+ with npm runs the TS SDK tests)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; it is required when CI is set", pytrace=False)
    pytest.skip(reason)


def node() -> str:
    """The node binary, checked to be recent enough."""
    path = require("node")
    version = subprocess.run(  # noqa: S603 - a found binary, fixed arguments
        [path, "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < NODE_MIN_MAJOR:
        pytest.skip(f"node {version} is too old (need {NODE_MIN_MAJOR}+)")
    return path


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mcp-oauth-proxy"


def installed(source: Path, *, name: str, files: tuple[str, ...] = ()) -> Path:
    """A directory with ``source``'s locked packages installed, plus ``files``
    copied from ``source`` next to node_modules (ES modules resolve imports
    from the importing file's directory)."""
    node()
    npm = require("npm")
    manifest = (source / "package.json").read_bytes()
    lock = (source / "package-lock.json").read_bytes()
    digest = hashlib.sha256(manifest + lock).hexdigest()[:16]
    target = cache_root() / f"{name}-{digest}"
    marker = target / ".installed"
    if not marker.exists():
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / "package.json", target / "package.json")
        shutil.copy(source / "package-lock.json", target / "package-lock.json")
        result = subprocess.run(  # noqa: S603 - a found binary, fixed arguments
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=target,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_SECONDS,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"npm ci failed:\n{result.stdout}\n{result.stderr}")
        marker.write_text("ok\n")
    for file in files:
        shutil.copy(source / file, target / file)
    return target
