"""`python -m proxy`: the one-command demo, run as a user would run it.

With nothing configured it starts a demo IdP, the demo MCP server and the proxy
(gunicorn) in gateway mode, and prints the MCP URL. A real MCP client (the SDK's
OAuth client from tests/e2e) then logs in and calls tools through it. Stopping
the command must stop every process it started.
"""

from __future__ import annotations

import functools
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import requests

from support.processes import free_port
from tests.e2e.mcp_oauth_client import connect_and_call

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 45.0
USER = "demo-user@example.com"
CONFIG_PREFIXES = ("OAUTH_", "MCP_", "PROXY_", "GUNICORN_", "REDIS_")
CONFIG_NAMES = ("PUBLIC_URL", "PORT", "HOST", "WEB_CONCURRENCY")

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="needs /proc to find child processes"
)


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any proxy configuration."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(CONFIG_PREFIXES) and name not in CONFIG_NAMES
    }
    # Output is piped, not a terminal: make the printed URL visible at once.
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), env.get("PYTHONPATH")])
    )
    env.update(extra)
    return env


# --------------------------------------------------------------------------- #
# Process tree inspection through /proc
# --------------------------------------------------------------------------- #


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def descendants(root: int) -> dict[int, str]:
    """Every live descendant of ``root``: pid -> command line."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is not None:
            children.setdefault(stat[1], []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            continue
        found[pid] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
        todo.extend(children.get(pid, []))
    return found


def is_alive(pid: int) -> bool:
    """Running (a zombie has exited; only its exit status is left)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


# --------------------------------------------------------------------------- #
# The demo command
# --------------------------------------------------------------------------- #


class Demo:
    """`python -m proxy --port P` in its own process group, output in a queue."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.popen = subprocess.Popen(  # noqa: S603 - our interpreter and module
            [sys.executable, "-m", "proxy", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=clean_env(),
            cwd=ROOT,
            start_new_session=True,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_for_line(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.popen.poll() is not None:
                    break
                continue
            if line.startswith(prefix):
                return line
        raise AssertionError(
            f"no {prefix!r} line within {timeout:.0f} s; output:\n{self.log()}"
        )

    def log(self) -> str:
        return "".join(self.output)[-20_000:]

    def kill_group(self) -> None:
        """Teardown: whatever is left in the group gets SIGKILL."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._reader.join(timeout=5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


@pytest.fixture
def demo() -> Iterator[Demo]:
    running = Demo(free_port())
    try:
        yield running
    finally:
        tree = descendants(running.popen.pid)
        running.kill_group()
        for pid in tree:
            # Children that left the group (none should) are still ours to end.
            if is_alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_demo_serves_an_mcp_client_and_stops_cleanly(
    demo: Demo, stop_signal: signal.Signals
) -> None:
    """The demo: one command, a printed MCP URL that a real OAuth MCP client can
    use from scratch, and no process left behind after Ctrl-C or SIGTERM."""
    line = demo.wait_for_line("MCP URL:", START_TIMEOUT_SECONDS)
    mcp_url = line.split(":", 1)[1].strip()
    assert mcp_url == f"http://127.0.0.1:{demo.port}/mcp"
    base = mcp_url.removesuffix("/mcp")
    assert requests.get(f"{base}/healthz", timeout=5).status_code == 200

    try:
        report = anyio.run(functools.partial(connect_and_call, mcp_url, USER))
    except Exception as exc:  # show the demo's own log next to the client's error
        pytest.fail(f"the MCP client failed: {exc!r}\ndemo output:\n{demo.log()}")
    assert report.http[0].status == 401
    assert {"echo", "whoami", "count"} <= set(report.tools)
    assert report.before.echo == "before refresh"
    assert report.before.whoami["user"] == USER
    assert report.before.whoami["authorization"] is None
    assert report.after is not None
    assert report.after.echo == "after refresh"

    tree = descendants(demo.popen.pid)
    commands = list(tree.values())
    assert any("oidc_provider_mock" in c for c in commands), commands
    assert any("proxy.cli.demo_mcp_server" in c for c in commands), commands
    # The gunicorn master and at least one worker.
    assert sum("gunicorn" in c for c in commands) >= 2, commands

    demo.popen.send_signal(stop_signal)
    try:
        demo.popen.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the demo did not stop on {stop_signal.name}:\n{demo.log()}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(is_alive(pid) for pid in tree):
        time.sleep(0.1)
    left = {pid: cmd for pid, cmd in tree.items() if is_alive(pid)}
    assert not left, f"left behind after {stop_signal.name}: {left}"


def test_demo_refuses_a_public_url_without_an_idp(tmp_path: Path) -> None:
    """The demo IdP is for loopback only: a public PUBLIC_URL without OAUTH_ISSUER
    stops at once with a message naming the variable, and starts nothing."""
    result = subprocess.run(  # noqa: S603 - our interpreter and module
        [sys.executable, "-m", "proxy", "--port", str(free_port())],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=clean_env(PUBLIC_URL="https://example.com"),
        cwd=tmp_path,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "OAUTH_ISSUER" in result.stderr
    assert "MCP URL:" not in result.stdout
