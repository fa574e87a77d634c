"""gunicorn settings for the proxy (PaaS-friendly: $PORT, $WEB_CONCURRENCY).

Workers are separate processes sharing nothing but Redis. The worker class is
`gthread`: each request, including a long-lived MCP SSE stream relayed by the
gateway, holds one thread while it waits on the network, and the other threads
of the same worker keep serving. Capacity is workers x threads concurrent
requests (default: cores x 32, so 64 open streams on 2 cores) before a request
queues. We chose threads over gevent: no monkey-patching of redis-py,
requests and cryptography, and an idle thread costs little memory. Raise
GUNICORN_THREADS for many simultaneous SSE clients.

On shutdown (SIGTERM), workers stop accepting, and in-flight requests and
streams get `graceful_timeout` seconds to finish before they are cut.
"""

from __future__ import annotations

import multiprocessing
import os
import sys

from dotenv import load_dotenv

load_dotenv()

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"  # noqa: S104
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "32"))
# A worker is restarted only if it stops answering the arbiter; threads that
# relay long SSE streams do not count against it.
timeout = 60
graceful_timeout = 30
keepalive = 5
# Several proxies (and tests) may run on one host: no shared control socket.
control_socket_disable = True
accesslog = "-" if os.environ.get("ACCESS_LOG", "").lower() in ("1", "true") else None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# Behind a PaaS router: believe X-Forwarded-* only from the configured proxies.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def on_starting(server: object) -> None:
    """Refuse several workers on the embedded store: each would have its own."""
    cfg = getattr(server, "cfg", None)
    count = getattr(cfg, "workers", workers)
    if count > 1 and not os.environ.get("REDIS_URL"):
        sys.stderr.write(
            "error: REDIS_URL is not set, and the embedded store lives inside one "
            f"process, but gunicorn was asked for {count} workers. Set REDIS_URL "
            "(e.g. REDIS_URL=redis://localhost:6379/0) or run with --workers 1.\n"
        )
        raise SystemExit(3)
