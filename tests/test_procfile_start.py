"""The Procfile's `web:` command, started as a PaaS would, with good and bad settings.

A configuration error must stop gunicorn: one line naming the setting, a
non-zero exit, no traceback, and no worker crash loop (a worker exiting with
any status but 3 or 4 is restarted forever, with the port bound and requests
hanging). A good configuration must still start and answer.
"""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from support.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
#: Generous: the master checks the settings in a child before it binds.
EXIT_TIMEOUT_SECONDS = 30.0
START_TIMEOUT_SECONDS = 30.0
CONFIG_PREFIXES = ("OAUTH_", "MCP_", "PROXY_", "GUNICORN_", "REDIS_", "RATE_LIMIT")
CONFIG_NAMES = ("PUBLIC_URL", "PORT", "HOST", "WEB_CONCURRENCY")


def procfile_web(port: int) -> list[str]:
    """The Procfile's web command with $PORT substituted, as the PaaS runs it."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            command = line.removeprefix("web:").strip()
            return shlex.split(command.replace("$PORT", str(port)))
    raise AssertionError("Procfile has no web: line")


def good_env(port: int) -> dict[str, str]:
    """A minimal valid configuration: one worker on the embedded store."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(CONFIG_PREFIXES) and k not in CONFIG_NAMES
    }
    return {
        **inherited,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "1",
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "OAUTH_ISSUER": "https://idp.example.com",
        "OAUTH_CLIENT_ID": "proxy-client",
        "OAUTH_CLIENT_SECRET": "proxy-secret",
        "PROXY_SECRET_KEY": secrets.token_hex(32),
        "PYTHONPATH": str(ROOT),
    }


@pytest.mark.parametrize(
    ("name", "value", "workers"),
    [
        ("PUBLIC_URL", "not-a-url", "1"),
        ("RATE_LIMIT_TOKEN", "abc", "2"),
        ("MAX_STREAMS_PER_GRANT", "lots", "2"),
    ],
)
def test_bad_setting_stops_the_start_with_one_line(
    name: str, value: str, workers: str
) -> None:
    port = free_port()
    env = {**good_env(port), "WEB_CONCURRENCY": workers, name: value}
    if workers != "1":
        env["REDIS_URL"] = "redis://127.0.0.1:1/0"  # never reached: refused first
    started = time.monotonic()
    try:
        done = subprocess.run(
            procfile_web(port),
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=EXIT_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"gunicorn still running after {exc.timeout} s: {exc.stderr!r}")
    elapsed = time.monotonic() - started
    print(f"\n{name}={value!r}: exit {done.returncode} after {elapsed:.2f} s")
    print(done.stderr)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    naming = [line for line in done.stderr.splitlines() if name in line]
    assert len(naming) == 1, done.stderr
    assert naming[0].startswith("configuration error:")
    assert "Booting worker" not in done.stderr  # refused before any fork


def test_worker_boot_error_halts_gunicorn(tmp_path: Path) -> None:
    """Should a worker still fail to load the settings, gunicorn halts, not loops.

    Started with config/gunicorn.conf.py minus the master's check, only the
    workers (wsgi.py) meet the bad setting, and their exit status 3 must stop
    gunicorn."""
    port = free_port()
    unchecked = tmp_path / "gunicorn.conf.py"
    real = ROOT / "config" / "gunicorn.conf.py"
    unchecked.write_text(
        f"__file__ = {str(real)!r}\n"
        f"exec(compile(open(__file__).read(), __file__, 'exec'))\n"
        "def _check_settings() -> None:\n    pass\n"
    )
    argv = ["gunicorn", "-c", str(unchecked), "--workers", "2"]
    argv += ["--bind", f"127.0.0.1:{port}", "wsgi:app"]
    env = {**good_env(port), "WEB_CONCURRENCY": "2", "RATE_LIMIT_TOKEN": "abc"}
    env["REDIS_URL"] = "redis://127.0.0.1:1/0"
    started = time.monotonic()
    done = subprocess.run(
        argv,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT_SECONDS,
        check=False,
    )
    elapsed = time.monotonic() - started
    boots = done.stderr.count("Booting worker")
    print(f"\nexit {done.returncode} after {elapsed:.2f} s, {boots} workers booted")
    print(done.stderr)
    # Usually 3, gunicorn's WORKER_BOOT_ERROR passed on. When both workers fail
    # in the same instant, gunicorn 27 reaps the second one's 3 inside halt()
    # and dies of that HaltServer (exit 1, with a traceback): still halted.
    assert done.returncode in (1, 3)
    assert "Worker failed to boot" in done.stderr
    # At most each first worker tried once: no restart loop.
    assert done.stderr.count("RATE_LIMIT_TOKEN") <= 2


def test_good_settings_start_and_answer(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "gunicorn.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            procfile_web(port),
            cwd=ROOT,
            env=good_env(port),
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    started = time.monotonic()
    try:
        answered = None
        while time.monotonic() - started < START_TIMEOUT_SECONDS:
            assert proc.poll() is None, log.read_text()
            try:
                answered = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        elapsed = time.monotonic() - started
        assert answered is not None, "no answer"
        print(f"\nready after {elapsed:.2f} s: {answered.status_code}")
        # The store is up; the IdP at idp.example.com is not there, which
        # /readyz reports (issue 10): the process started and answers.
        assert answered.status_code in (200, 503), answered.text
        body = answered.json()
        assert body["store"] == "up", body
        if answered.status_code == 503:
            assert body["upstream"] in ("discovery_unreachable", "pending"), body
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    assert "Traceback" not in log.read_text()
