"""Start the real processes of the end-to-end stack and tear them down reliably.

Every helper binds a free loopback port, sends the child's stdout and stderr to a
temporary log file, waits (bounded) until the child answers, and on failure prints
that log so a broken start says why. Children run in their own process group so
that teardown also reaches gunicorn's workers and anything else they fork.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import redis
import requests

#: The repository root: gunicorn runs from here so `wsgi:app` and `config/` resolve.
REPO_ROOT = Path(__file__).resolve().parents[2]
RESOURCE_SERVER_SCRIPT = Path(__file__).with_name("mcp_resource_server.py")
DEFAULT_TIMEOUT = 20.0
#: Set to keep the children's log files after teardown (they are printed on failure).
KEEP_LOGS_ENV = "E2E_KEEP_LOGS"


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

    def output(self, max_chars: int = 20_000) -> str:
        """The tail of what the child wrote to stdout and stderr."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<cannot read {self.log_path}: {exc}>"
        return text[-max_chars:]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the whole group, SIGKILL what is left after ``grace``, then reap.

        The leader is left a zombie until the end (``WNOWAIT``) so its pid, and so
        the group id, cannot be reused by an unrelated process while we signal it.
        """
        if self.popen.returncode is not None:
            return
        self._signal_group(signal.SIGTERM)
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
        """Remove the log file, unless E2E_KEEP_LOGS is set."""
        if not os.environ.get(KEEP_LOGS_ENV):
            self.log_path.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop the process and discard its log."""
        self.stop()
        self.discard_log()

    def dump(self) -> None:
        """Print the child's log (pytest shows it for failing tests)."""
        print(f"\n===== {self.name} ({' '.join(self.argv)}) log: {self.log_path} =====")
        print(self.output())
        print(f"===== end of {self.name} log =====")


def start_process(
    name: str,
    argv: list[str],
    *,
    port: int,
    url: str,
    ready: Callable[[], bool],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> ManagedProcess:
    """Start ``argv`` and wait until ``ready()`` is true, or fail with its log."""
    log_fd, log_name = tempfile.mkstemp(prefix=f"e2e-{name}-", suffix=".log")
    with os.fdopen(log_fd, "wb") as log_file:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    proc = ManagedProcess(name, argv, popen, Path(log_name), url, port)
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
    proc.dump()
    output = proc.output()
    proc.close()
    raise ProcessStartError(f"{name} failed to start: {last_error}\n{output}")


def _http_ok(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        return requests.get(url, timeout=1.0).status_code == 200

    return probe


def start_redis(*, timeout: float = DEFAULT_TIMEOUT) -> ManagedProcess:
    """A throwaway redis-server with persistence off."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ProcessStartError("redis-server is not installed")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1"]
    argv += ["--save", "", "--appendonly", "no"]

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
        timeout=timeout,
    )


def start_idp(
    *, extra_args: list[str] | None = None, timeout: float = DEFAULT_TIMEOUT
) -> ManagedProcess:
    """oidc-provider-mock, the upstream IdP.

    Its advertised issuer is the Host it is reached by, so the returned URL uses
    127.0.0.1 and callers must keep using exactly that form.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "oidc_provider_mock", "-p", str(port)]
    argv += extra_args or []
    proc = start_process(
        "idp",
        argv,
        port=port,
        url=url,
        ready=_http_ok(f"{url}/.well-known/openid-configuration"),
        timeout=timeout,
    )
    issuer = requests.get(f"{url}/.well-known/openid-configuration", timeout=5).json()[
        "issuer"
    ]
    if issuer != url:
        proc.close()
        raise ProcessStartError(f"idp advertises issuer {issuer!r}, expected {url!r}")
    return proc


def proxy_env(
    *,
    public_url: str,
    idp_url: str,
    audience: str,
    redis_url: str,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The proxy's environment per the contract; ``overrides`` win."""
    env = {
        "PUBLIC_URL": public_url,
        "OAUTH_ISSUER": idp_url,
        "OAUTH_CLIENT_ID": "proxy-client",
        "OAUTH_CLIENT_SECRET": "proxy-secret",
        "OAUTH_AUDIENCE": audience,
        "REDIS_URL": redis_url,
        "PROXY_SECRET_KEY": secrets.token_hex(32),
        "MCP_SCOPES": "mcp",
    }
    env.update(overrides or {})
    return env


def _proxy_setting(name: str) -> bool:
    """Whether an inherited variable could change the proxy's or gunicorn's setup."""
    prefixes = ("OAUTH_", "MCP_", "PROXY_", "REDIS_", "GUNICORN_")
    named = {"PUBLIC_URL", "PORT", "HOST", "WEB_CONCURRENCY", "GUNICORN_CMD_ARGS"}
    return name.startswith(prefixes) or name in named


def start_proxy(
    env: Mapping[str, str],
    *,
    port: int,
    workers: int = 2,
    extra_args: list[str] | None = None,
    timeout: float = 30.0,
) -> ManagedProcess:
    """The proxy under gunicorn, exactly as deployed, bound to ``port``.

    The port is chosen by the caller because PUBLIC_URL (in ``env``) must name it.
    Readiness is `/readyz`, which only answers once Redis and the keys are usable.
    """
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py"]
    argv += ["--workers", str(workers), "--bind", f"127.0.0.1:{port}"]
    argv += [*(extra_args or []), "wsgi:app"]
    # The developer's shell must not configure the proxy behind the test's back;
    # explicit variables also win over a .env file (python-dotenv does not override).
    inherited = {k: v for k, v in os.environ.items() if not _proxy_setting(k)}
    child_env = {**inherited, **env}
    return start_process(
        "proxy",
        argv,
        port=port,
        url=url,
        ready=_http_ok(f"{url}/readyz"),
        env=child_env,
        cwd=REPO_ROOT,
        timeout=timeout,
    )


def start_resource_server(
    *,
    issuer: str,
    port: int,
    required_scope: str = "mcp",
    timeout: float = DEFAULT_TIMEOUT,
) -> ManagedProcess:
    """The SDK-built MCP resource server trusting ``issuer``; url is its /mcp."""
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, str(RESOURCE_SERVER_SCRIPT), "--port", str(port)]
    argv += ["--issuer", issuer, "--resource", f"{base}/mcp"]
    argv += ["--required-scope", required_scope]
    return start_process(
        "resource-server",
        argv,
        port=port,
        url=f"{base}/mcp",
        ready=_http_ok(f"{base}/.well-known/oauth-protected-resource/mcp"),
        timeout=timeout,
    )


@dataclass
class Stack:
    """The running processes and the URLs a test needs."""

    redis_url: str
    idp_url: str
    proxy_url: str
    mcp_url: str
    proxy_env: dict[str, str]
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    def dump_logs(self) -> None:
        for proc in self.processes.values():
            proc.dump()

    def stop(self) -> None:
        # Reverse start order: clients of a service go before the service.
        for proc in reversed(list(self.processes.values())):
            proc.close()


@contextlib.contextmanager
def running_stack(
    *,
    proxy_overrides: Mapping[str, str] | None = None,
    workers: int = 2,
    proxy_args: list[str] | None = None,
) -> Iterator[Stack]:
    """redis-server + IdP + proxy (gunicorn) + resource server, torn down on exit."""
    processes: dict[str, ManagedProcess] = {}
    try:
        processes["redis"] = start_redis()
        processes["idp"] = start_idp()
        proxy_port, rs_port = free_port(), free_port()
        proxy_url = f"http://127.0.0.1:{proxy_port}"
        mcp_url = f"http://127.0.0.1:{rs_port}/mcp"
        env = proxy_env(
            public_url=proxy_url,
            idp_url=processes["idp"].url,
            audience=mcp_url,
            redis_url=processes["redis"].url,
            overrides=proxy_overrides,
        )
        processes["proxy"] = start_proxy(
            env, port=proxy_port, workers=workers, extra_args=proxy_args
        )
        processes["resource-server"] = start_resource_server(
            issuer=proxy_url, port=rs_port
        )
        yield Stack(
            redis_url=processes["redis"].url,
            idp_url=processes["idp"].url,
            proxy_url=proxy_url,
            mcp_url=mcp_url,
            proxy_env=env,
            processes=processes,
        )
    finally:
        for proc in reversed(list(processes.values())):
            proc.close()
