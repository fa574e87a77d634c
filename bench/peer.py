"""The peer's own virtualenv (bench/.venv-peer) and its server process."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

from support.processes import REPO_ROOT
from support.processes import ManagedProcess
from support.processes import ProcessStartError
from support.processes import free_port
from support.processes import start_http

from .stack import START_TIMEOUT

VENV = Path(__file__).resolve().parent / ".venv-peer"
SERVER = Path(__file__).resolve().parent / "peer_server.py"
PACKAGES = ["fastmcp", "uvicorn"]


class PeerUnavailableError(RuntimeError):
    """The peer could not be installed, configured or started; says why."""


def python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv(log_dir: Path) -> str:
    """Create the venv and install FastMCP once; return its version."""
    if not python().exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    probe = [str(python()), "-c", "import fastmcp; print(fastmcp.__version__)"]
    found = subprocess.run(probe, capture_output=True, text=True, check=False)
    if found.returncode == 0:
        return found.stdout.strip()
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "peer-pip.log"
    with open(log, "w") as out:
        pip = [str(python()), "-m", "pip", "install", "--quiet", *PACKAGES]
        done = subprocess.run(pip, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-800:]
        raise PeerUnavailableError(
            f"`pip install {' '.join(PACKAGES)}` into {VENV} failed "
            f"(exit {done.returncode}):\n{tail}"
        )
    found = subprocess.run(probe, capture_output=True, text=True, check=False)
    if found.returncode != 0:
        raise PeerUnavailableError(f"fastmcp does not import: {found.stderr[-800:]}")
    return found.stdout.strip()


def start(idp_url: str, log_dir: Path) -> ManagedProcess:
    port = free_port()
    argv = [str(python()), str(SERVER), "--port", str(port), "--issuer", idp_url]
    try:
        return start_http(
            "peer",
            argv,
            port=port,
            ready_path="/.well-known/oauth-authorization-server",
            cwd=REPO_ROOT,
            log_dir=log_dir,
            timeout=START_TIMEOUT,
        )
    except ProcessStartError as exc:
        raise PeerUnavailableError(str(exc)) from exc


if __name__ == "__main__":  # pragma: no cover - manual helper
    print(ensure_venv(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp")))
