"""Start the benchmark's real processes, account their CPU, and stop them.

Every child runs in its own session (process group), so gunicorn's workers are
found, measured and stopped with their master. Output goes to a log file under
the results directory; a child that fails to start has its log printed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import redis
import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
GUNICORN_CONF = "config/gunicorn.conf.py"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class StartError(RuntimeError):
    """A child did not become ready; the message carries the tail of its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        """Every live process of this child's group (gunicorn master + workers)."""
        return group_pids(self.popen.pid)

    def worker_pids(self) -> list[int]:
        """The group's processes other than the leader (gunicorn's workers)."""
        return [p for p in self.pids() if p != self.popen.pid] or [self.popen.pid]

    def cpu_seconds(self) -> float:
        return sum(_cpu_of(pid) for pid in self.pids())

    def tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, grace: float = 5.0) -> None:
        if self.popen.poll() is None:
            _kill_group(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        _kill_group(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=grace)


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat_fields(int(entry))
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 of stat: pgrp
            pids.append(int(entry))
    return pids


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    # comm may contain spaces: split after the closing parenthesis.
    return text[text.rindex(")") + 2 :].split()


def _cpu_of(pid: int) -> float:
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    # utime, stime are fields 14, 15 (1-based) of stat; index 11, 12 here.
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def start(
    name: str,
    argv: list[str],
    *,
    port: int,
    ready: Callable[[], bool],
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=REPO_ROOT,
            start_new_session=True,
        )
    proc = Proc(name, popen, log_path, port)
    deadline = time.monotonic() + timeout
    last = "never probed"
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            last = f"exited with status {popen.returncode}"
            break
        try:
            if ready():
                return proc
        except Exception as exc:  # not ready yet
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.1)
    proc.stop()
    raise StartError(f"{name} did not start ({last}); log:\n{proc.tail()}")


def http_ok(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        return requests.get(url, timeout=1.0).status_code == 200

    return probe


def start_redis(log_dir: Path) -> Proc:
    binary = shutil.which("redis-server")
    if binary is None:
        raise StartError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1"]
    argv += ["--save", "", "--appendonly", "no"]

    def probe() -> bool:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0)
        try:
            return bool(client.ping())
        finally:
            client.close()

    return start("redis", argv, port=port, ready=probe, log_dir=log_dir)


def gunicorn_argv(app: str, port: int, workers: int, threads: int | None) -> list[str]:
    argv = [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONF]
    argv += ["--workers", str(workers), "--bind", f"127.0.0.1:{port}"]
    if threads is not None:
        argv += ["--threads", str(threads)]
    return [*argv, app]


def start_idp(log_dir: Path, threads: int, app: str = "bench.fast_idp:app") -> Proc:
    """The upstream IdP under gunicorn: ONE worker (the mock's state is in-process)."""
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "--worker-class", "gthread"]
    argv += ["--workers", "1", "--threads", str(threads)]
    argv += ["--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
    argv += [app]
    url = f"http://127.0.0.1:{port}/.well-known/openid-configuration"
    return start("idp", argv, port=port, ready=http_ok(url), log_dir=log_dir)


def start_mcp_backend(log_dir: Path) -> Proc:
    port = free_port()
    argv = [sys.executable, "-m", "proxy.cli.demo_mcp_server", "--port", str(port)]

    def probe() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True

    return start("mcp-backend", argv, port=port, ready=probe, log_dir=log_dir)
