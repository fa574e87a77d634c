"""Start real processes, wait until they answer, and stop them with their children.

One supervisor for the end-to-end tests (tests/e2e/) and the benchmark (bench/).
Every helper binds a free loopback port and waits, bounded, until the child
answers. Children run in their own session (process group), so gunicorn's
workers are found, measured and stopped with their master, along with anything
else they fork.

A child's stdout and stderr go to `<log_dir>/<name>.log`, kept (the benchmark),
or, without a `log_dir`, to a temporary file that `close()` removes unless
E2E_KEEP_LOGS is set (the tests). A child that does not become ready is stopped,
and the error carries its command and the tail of its log.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import redis
import requests

#: The repository root: gunicorn runs from here so `wsgi:app` and `config/` resolve.
REPO_ROOT = Path(__file__).resolve().parents[1]
GUNICORN_CONF = "config/gunicorn.conf.py"
DEFAULT_TIMEOUT = 20.0
#: Set to keep temporary log files after `close()` (they are in a failed start's error).
KEEP_LOGS_ENV = "E2E_KEEP_LOGS"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class ProcessStartError(RuntimeError):
    """A child did not become ready; the message carries its log."""


def free_port() -> int:
    """A loopback port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ManagedProcess:
    """A child process in its own process group, with its output in a file."""

    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log_path: Path
    url: str
    port: int
    #: A log under a caller's directory is kept; a temporary one is discarded.
    keep_log: bool = False

    def output(self, max_chars: int = 20_000) -> str:
        """The tail of what the child wrote to stdout and stderr."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<cannot read {self.log_path}: {exc}>"
        return text[-max_chars:]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def pids(self) -> list[int]:
        """Every live process of this child's group (gunicorn master + workers)."""
        return _group_pids(self.popen.pid)

    def worker_pids(self) -> list[int]:
        """The group's processes other than the leader (gunicorn's workers)."""
        return [p for p in self.pids() if p != self.popen.pid] or [self.popen.pid]

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the group's live processes."""
        return sum(_cpu_seconds_of(pid) for pid in self.pids())

    def stop(self, grace: float = 5.0) -> None:
        """SIGINT the whole group, SIGKILL what is left after ``grace``, then reap.

        SIGINT, not SIGTERM: gunicorn's quick shutdown. A graceful one waits
        for every open connection (a test's SSE stream, a keep-alive) for up
        to its graceful timeout, seconds per stack for nothing to prove.

        The leader is left a zombie until the end (``WNOWAIT``) so its pid, and so
        the group id, cannot be reused by an unrelated process while we signal it.
        """
        if self.popen.returncode is not None:
            return
        self._signal_group(signal.SIGINT)
        deadline = time.monotonic() + grace
        while not self._leader_exited() and time.monotonic() < deadline:
            time.sleep(0.05)
        # Also sweeps workers that outlived their master.
        self._signal_group(signal.SIGKILL)
        self.popen.wait(timeout=grace)

    def _leader_exited(self) -> bool:
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        try:
            return os.waitid(os.P_PID, self.popen.pid, flags) is not None
        except ChildProcessError:
            return True

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def discard_log(self) -> None:
        """Remove a temporary log file, unless E2E_KEEP_LOGS is set."""
        if not self.keep_log and not os.environ.get(KEEP_LOGS_ENV):
            self.log_path.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop the process and discard its temporary log."""
        self.stop()
        self.discard_log()

    def dump(self) -> None:
        """Print the child's log (pytest shows it for failing tests)."""
        print(f"\n===== {self.name} ({' '.join(self.argv)}) log: {self.log_path} =====")
        print(self.output())
        print(f"===== end of {self.name} log =====")


def _group_pids(pgid: int) -> list[int]:
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
    """The fields of /proc/<pid>/stat after `comm` (field 3 is index 0)."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    # comm may contain spaces: split after the closing parenthesis.
    return text[text.rindex(")") + 2 :].split()


def _cpu_seconds_of(pid: int) -> float:
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    # utime, stime are fields 14, 15 (1-based) of stat; index 11, 12 here.
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _log_path(name: str, log_dir: Path | None) -> Path:
    """`<log_dir>/<name>.log`, or a new temporary file without a `log_dir`."""
    if log_dir is None:
        fd, path = tempfile.mkstemp(prefix=f"e2e-{name}-", suffix=".log")
        os.close(fd)
        return Path(path)
    log_dir.mkdir(parents=True, exist_ok=True)
    return log_dir / f"{name}.log"


def start_process(
    name: str,
    argv: list[str],
    *,
    port: int,
    url: str,
    ready: Callable[[], bool],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    log_dir: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> ManagedProcess:
    """Start ``argv`` and wait until ``ready()`` is true, or fail with its log.

    ``env`` replaces the inherited environment when given.
    """
    log_path = _log_path(name, log_dir)
    with open(log_path, "wb") as log_file:
        popen = subprocess.Popen(  # noqa: S603 - argv comes from this repo's code
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    proc = ManagedProcess(
        name, argv, popen, log_path, url, port, keep_log=log_dir is not None
    )
    deadline = time.monotonic() + timeout
    last_error = "never probed"
    while time.monotonic() < deadline:
        if not proc.alive():
            last_error = f"exited with status {popen.returncode}"
            break
        try:
            if ready():
                return proc
            last_error = "readiness probe returned false"
        except Exception as exc:  # any probe failure means "not ready yet"
            last_error = f"{type(exc).__name__}: {exc}"
        time.sleep(0.1)
    else:
        last_error = f"not ready after {timeout:.0f}s ({last_error})"
    output = proc.output()
    proc.close()
    raise ProcessStartError(
        f"{name} failed to start: {last_error}\n"
        f"command: {' '.join(argv)}\nlog ({log_path}):\n{output}"
    )


def http_ok(url: str) -> Callable[[], bool]:
    """A readiness probe: ``url`` answers 200."""

    def probe() -> bool:
        return requests.get(url, timeout=1.0).status_code == 200

    return probe


def start_http(
    name: str,
    argv: list[str],
    *,
    port: int,
    ready_path: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    log_dir: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> ManagedProcess:
    """``argv`` serving HTTP on 127.0.0.1:``port`` (its url), ready once
    ``ready_path`` answers 200."""
    url = f"http://127.0.0.1:{port}"
    return start_process(
        name,
        argv,
        port=port,
        url=url,
        ready=http_ok(url + ready_path),
        env=env,
        cwd=cwd,
        log_dir=log_dir,
        timeout=timeout,
    )


def start_redis(
    *,
    port: int | None = None,
    extra_args: list[str] | None = None,
    log_dir: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> ManagedProcess:
    """A throwaway redis-server with persistence off; url is its redis:// URL.

    ``port`` restarts one on the port a killed one had (empty: no persistence),
    as a Redis restarted without its data looks to the proxy.
    ``extra_args`` are more redis-server options, e.g. ``["--maxmemory",
    "8mb", "--maxmemory-policy", "noeviction"]`` for the fault tests.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise ProcessStartError(
            "redis-server is not installed (apt-get install redis-server)"
        )
    port = free_port() if port is None else port
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1"]
    argv += ["--save", "", "--appendonly", "no", *(extra_args or [])]

    def probe() -> bool:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0)
        try:
            return bool(client.ping())
        finally:
            client.close()

    return start_process(
        "redis",
        argv,
        port=port,
        url=f"redis://127.0.0.1:{port}/0",
        ready=probe,
        log_dir=log_dir,
        timeout=timeout,
    )


def start_demo_backend(
    *,
    name: str = "demo-mcp-server",
    log_dir: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> ManagedProcess:
    """`python -m proxy.cli.demo_mcp_server` (no auth); url is its /mcp."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"

    def answers() -> bool:
        # Any HTTP answer below 500 (405, 406, 400) means the server is listening.
        return requests.get(url, timeout=1.0).status_code < 500

    return start_process(
        name,
        [sys.executable, "-m", "proxy.cli.demo_mcp_server", "--port", str(port)],
        port=port,
        url=url,
        ready=answers,
        log_dir=log_dir,
        timeout=timeout,
        # From the repository: `proxy` imports whether or not it is installed.
        cwd=REPO_ROOT,
    )


def _proxy_setting(name: str) -> bool:
    """Whether an inherited variable could change the proxy's or gunicorn's setup."""
    prefixes = ("OAUTH_", "MCP_", "PROXY_", "REDIS_", "GUNICORN_")
    named = {"PUBLIC_URL", "PORT", "HOST", "WEB_CONCURRENCY", "GUNICORN_CMD_ARGS"}
    return name.startswith(prefixes) or name in named


def start_gunicorn(
    name: str,
    app: str,
    env: Mapping[str, str],
    *,
    port: int,
    workers: int,
    ready_path: str,
    extra_args: list[str] | None = None,
    log_dir: Path | None = None,
    timeout: float = 30.0,
) -> ManagedProcess:
    """``app`` under gunicorn with config/gunicorn.conf.py, bound to ``port``.

    The developer's shell must not configure the app behind the caller's back:
    inherited proxy and gunicorn settings are dropped, and ``env`` is explicit
    (which also wins over a .env file: python-dotenv does not override).
    """
    argv = [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONF]
    argv += ["--workers", str(workers), "--bind", f"127.0.0.1:{port}"]
    argv += [*(extra_args or []), app]
    inherited = {k: v for k, v in os.environ.items() if not _proxy_setting(k)}
    return start_http(
        name,
        argv,
        port=port,
        ready_path=ready_path,
        env={**inherited, **env},
        cwd=REPO_ROOT,
        log_dir=log_dir,
        timeout=timeout,
    )


def start_proxy(
    env: Mapping[str, str],
    *,
    port: int,
    workers: int = 2,
    extra_args: list[str] | None = None,
    log_dir: Path | None = None,
    timeout: float = 30.0,
) -> ManagedProcess:
    """The proxy under gunicorn, exactly as deployed, bound to ``port``.

    The port is chosen by the caller because PUBLIC_URL (in ``env``) must name it.
    Readiness is `/readyz`, which only answers once Redis and the keys are usable.
    """
    return start_gunicorn(
        "proxy",
        "wsgi:app",
        env,
        port=port,
        workers=workers,
        ready_path="/readyz",
        extra_args=extra_args,
        log_dir=log_dir,
        timeout=timeout,
    )
