"""A real wheel of the project, and a fresh venv that has it installed.

The wheel is built from a copy of the sources (setuptools would otherwise
leave build/ and *.egg-info in the checkout). The venv is made with
``--system-site-packages``, so the dependencies come from this machine, and the
wheel goes in with ``--no-deps``: what is tested is our package as installed,
not its dependency resolution. Its own site-packages come first, before the
machine's (where an editable install may point `proxy` at some checkout).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: What a build needs: pyproject.toml names the rest (the package, the loader).
BUILD_INPUTS = ("pyproject.toml", "README.md", "mcp_oauth_proxy_gunicorn.py", "proxy")
BUILD_TIMEOUT_SECONDS = 180


def _copy_sources(into: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in BUILD_INPUTS:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=ignore)
        else:
            shutil.copy2(source, into / name)


def _run(argv: list[str], **kwargs: object) -> None:
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )
    if done.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel --no-deps .` of the sources: the file pip would install."""
    sources = tmp_path_factory.mktemp("sources")
    _copy_sources(sources)
    dist = tmp_path_factory.mktemp("dist")
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), "."],
        cwd=sources,
    )
    (built,) = dist.glob("mcp_oauth_proxy-*.whl")
    return built


@pytest.fixture(scope="session")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Iterator[Path]:
    """A venv (dependencies from this machine) with the wheel installed; its root."""
    root = tmp_path_factory.mktemp("venv")
    _run(
        [
            sys.executable,
            "-m",
            "venv",
            "--system-site-packages",
            "--without-pip",
            str(root),
        ]
    )
    python = root / "bin" / "python"
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
        + ["--no-deps", "--disable-pip-version-check", str(wheel)]
    )
    yield root
    shutil.rmtree(root, ignore_errors=True)


def outside_env(**settings: str) -> dict[str, str]:
    """This environment minus anything that would pick the checkout or configure
    the proxy (PYTHONPATH, OAUTH_*, REDIS_URL, ...), plus ``settings``."""
    prefixes = ("OAUTH_", "MCP_", "PROXY_", "REDIS_", "GUNICORN_", "RATE_LIMIT")
    names = {"PUBLIC_URL", "PORT", "HOST", "WEB_CONCURRENCY", "PYTHONPATH"}
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(prefixes) and name not in names
    }
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **settings}
