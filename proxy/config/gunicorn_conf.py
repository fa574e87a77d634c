"""gunicorn settings for the proxy (PaaS-friendly: $PORT, $WEB_CONCURRENCY).

This file ships inside the package, so an installed proxy runs from any
directory: `gunicorn -c python:mcp_oauth_proxy_gunicorn proxy.web.wsgi:app`
(the Procfile's command). gunicorn never imports it as `proxy.config.gunicorn_conf`:
that would run proxy/__init__.py, and with it flask, redis, requests and
urllib3, in the arbiter before gevent patches the workers (see below, and
proxy/web/worker.py, which refuses to start then). Two thin loaders run this
file by path instead: mcp_oauth_proxy_gunicorn.py (installed beside the
package) and config/gunicorn.conf.py (a checkout's). For the same reason it
imports nothing of the package and loads its two helpers by path, relative
to itself.

Workers are separate processes sharing nothing but Redis. The worker class is
gunicorn's `gevent` worker with deadlines for slow clients
(proxy/web/worker.py): a connection waiting on the network, be it a relayed
MCP SSE stream, a slow request or an idle keep-alive, costs a greenlet, and
everyone else keeps being served. gevent patches the standard library when a
worker starts, before the app (redis-py, requests, urllib3, our locks) is
imported; `preload_app` would import it too early and is refused.

Why not `gthread` (our previous choice): a waiting connection holds one of
workers x threads (2 x 32 measured), so 64 slow or long-lived clients stop
the service. Measured by tests/resilience (2 workers, real Redis, IdP and MCP
backend; probes: discovery, a token refresh, a tool call on another grant,
each with a 10 s client timeout):

    answered probes, p50 / p99    gthread 2x32            gevent + deadlines
    1,000 slowloris (1 byte/s)    0/2, all timed out      114/114, 5.5 / 13 ms
    500 open SSE streams          0/2; 64-128 streams up  114/114, 5.7 / 11 ms
    200 slow bodies (1 byte/s)    0/2, all timed out      114/114, 6.0 / 10 ms
    all three at once             0/2; 64 streams up      112/112, 5.9 / 17 ms

(Under gthread each probe waited out its 10 s, so only two fit in the 12 s.)

gthread has no deadline for a request head or body, so those clients hold
their threads for as long as they like; gevent by itself has none either,
hence the worker's:

- REQUEST_HEADER_TIMEOUT_SECONDS (10): request line and headers, in total;
- REQUEST_BODY_TIMEOUT_SECONDS (15): the body, in total (then 408);
- KEEPALIVE_SECONDS (5): idle time between two requests on a connection;
- GUNICORN_WORKER_CONNECTIONS (4000): open connections per worker.

To go back to threads without a release:
GUNICORN_CMD_ARGS="--worker-class gthread --threads 32" (no deadlines then).

On shutdown (SIGTERM), workers stop accepting, and in-flight requests and
streams get `graceful_timeout` seconds to finish before they are cut.
"""

from __future__ import annotations

import glob
import importlib.util
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from dotenv import find_dotenv
from dotenv import load_dotenv

# The working directory's .env (python-dotenv would otherwise search upwards
# from this file, i.e. from site-packages once installed).
load_dotenv(find_dotenv(usecwd=True))

#: This file's package directory (``proxy/``), wherever it is installed.
_PACKAGE = Path(__file__).resolve().parent.parent
#: The app that `on_starting` checks the settings for (wsgi.py is a checkout's).
PROXY_APPS = ("proxy.web.wsgi:app", "proxy.web.wsgi", "wsgi:app", "wsgi")


def _setting(name: str, default: float, low: float, high: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # also refuses nan
        sys.stderr.write(
            f"configuration error: {name}={raw!r} must be a number from {low:g} "
            f"to {high:g} (default {default:g}).\n"
        )
        raise SystemExit(2)
    return value


def _deadline_worker() -> type:
    """proxy/web/worker.py, loaded by path. Importing it as proxy.web.worker would
    import the proxy package, and with it requests, urllib3 and redis, into the
    arbiter before gevent patches the workers: their TLS would then block a
    whole worker on every call to the IdP."""
    path = _PACKAGE / "web" / "worker.py"
    spec = importlib.util.spec_from_file_location("_proxy_gunicorn_worker", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"error: cannot load the worker class from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.DeadlineGeventWorker.configure(  # type: ignore[no-any-return]
        header_timeout=_setting("REQUEST_HEADER_TIMEOUT_SECONDS", 10, 1, 300),
        body_timeout=_setting("REQUEST_BODY_TIMEOUT_SECONDS", 15, 1, 3600),
    )


def _logger_class() -> type:
    """gunicorn's Logger writing our lines (proxy/observability/logging_setup.py,
    loaded by path for the reason given in _deadline_worker): LOG_FORMAT text or
    json, the request id, and an access line whose query and referer are
    redacted by parameter name (never the raw request line)."""
    path = _PACKAGE / "observability" / "logging_setup.py"
    spec = importlib.util.spec_from_file_location("_proxy_logging_setup", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"error: cannot load the logging set-up from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    log_format = os.environ.get("LOG_FORMAT", "text").strip().lower() or "text"
    return module.gunicorn_logger_class(log_format=log_format)  # type: ignore[no-any-return]


bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"  # noqa: S104
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_class = _deadline_worker()
# Open connections per worker, SSE streams and slow clients included; past it
# a worker stops accepting and the kernel's backlog holds new connections.
worker_connections = int(_setting("GUNICORN_WORKER_CONNECTIONS", 4000, 10, 100_000))
# The arbiter restarts a worker that stops answering it for this long; under
# gevent only a worker stuck on the CPU does, never one waiting on streams.
timeout = 60
graceful_timeout = 30
# Idle time allowed between two requests on one connection (0 is refused: the
# worker's header deadline rides on gunicorn's keep-alive loop).
keepalive = int(_setting("KEEPALIVE_SECONDS", 5, 1, 300))
# Several proxies (and tests) may run on one host: no shared control socket.
control_socket_disable = True
logger_class = _logger_class()
accesslog = "-" if os.environ.get("ACCESS_LOG", "").lower() in ("1", "true") else None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").strip().lower() or "info"
# Behind a PaaS router: believe X-Forwarded-* only from the configured proxies.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def on_starting(server: object) -> None:
    """Refuse to start on a configuration error, with one line and exit 2, before
    the port is bound or a worker forked. A worker that fails at boot would
    only be restarted by gunicorn, forever (wsgi.py's exit code 3 halts it)."""
    if _serves_the_proxy(server):
        _check_settings()
    _prepare_metrics_directory()
    cfg = getattr(server, "cfg", None)
    count = getattr(cfg, "workers", workers)
    # With REDIS_MODE=sentinel the sentinels name the shared store, not REDIS_URL.
    sentinel = os.environ.get("REDIS_MODE", "").strip().lower() == "sentinel"
    if count > 1 and not os.environ.get("REDIS_URL") and not sentinel:
        sys.stderr.write(
            "error: REDIS_URL is not set, and the embedded store lives inside one "
            f"process, but gunicorn was asked for {count} workers. Set REDIS_URL "
            "(e.g. REDIS_URL=redis://localhost:6379/0) or run with --workers 1.\n"
        )
        raise SystemExit(3)
    _raise_open_files_limit(cfg)


# -- Prometheus multiprocess mode (proxy/observability/metrics.py) ------------
# Every worker writes its values to files in PROMETHEUS_MULTIPROC_DIR, and
# /metrics sums them. The master makes the directory before forking, so all
# workers share it, and empties it: values of an earlier run are not ours.
# prometheus_client itself is not imported here (it would bind threading
# objects in the master before gevent patches the workers), so the files a
# dead worker leaves are removed by name, as its mark_process_dead() does.
# A directory inherited from a process that made it for itself (it holds a
# `private-to-pid` file, e.g. a test run's) is not ours to clear.
_METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
_private_metrics_dir: list[str] = []


def _prepare_metrics_directory() -> None:
    path = os.environ.get(_METRICS_DIR_VARIABLE)
    if not path or os.path.exists(os.path.join(path, "private-to-pid")):
        path = tempfile.mkdtemp(prefix="mcp-oauth-proxy-metrics-")
        os.environ[_METRICS_DIR_VARIABLE] = path
        _private_metrics_dir.append(path)
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)


def child_exit(server: object, worker: object) -> None:
    """A worker ended: its live gauges (open streams) no longer count; its
    counters and histograms stay in the sums."""
    path = os.environ.get(_METRICS_DIR_VARIABLE)
    pid = getattr(worker, "pid", None)
    if not path or pid is None:
        return
    for mode in ("liveall", "livesum", "livemax", "livemin", "livemostrecent"):
        for dead in glob.glob(os.path.join(path, f"gauge_{mode}_{pid}.db")):
            os.remove(dead)


def on_exit(server: object) -> None:
    for path in _private_metrics_dir:
        shutil.rmtree(path, ignore_errors=True)


def _serves_the_proxy(server: object) -> bool:
    """The proxy's app, not another app run with these settings (bench/)."""
    app_uri = getattr(getattr(server, "app", None), "app_uri", None)
    return app_uri is None or app_uri in PROXY_APPS


def _check_settings() -> None:
    """Load the settings in a child (proxy/cli/settings_check.py): importing the
    proxy here would import redis, requests and urllib3 into every worker before
    gevent patches it. The child writes the one line; the master only exits."""
    checked = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "proxy.cli.settings_check"],
        # From the directory holding this package: the child checks the very
        # code the workers will import (installed or a checkout).
        cwd=_PACKAGE.parent,
        check=False,
    )
    if checked.returncode != 0:
        raise SystemExit(checked.returncode)


def _raise_open_files_limit(cfg: object) -> None:
    """Every connection is a file descriptor, two when the gateway relays it:
    raise the soft limit (the workers inherit it) as far as the hard one allows."""
    count = int(getattr(cfg, "workers", workers))
    per_worker = int(getattr(cfg, "worker_connections", worker_connections))
    wanted = count * per_worker * 2 + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        sys.stderr.write(
            f"warning: open files limited to {target} (ulimit -n), below the "
            f"{wanted} that {count} workers x {per_worker} connections may need.\n"
        )
