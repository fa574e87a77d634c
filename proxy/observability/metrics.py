"""Prometheus counters and histograms, shared by every gunicorn worker.

``prometheus_client`` runs in multiprocess mode: each process writes its values
to memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` sums
the files of every worker, alive or gone (counters of a dead worker keep
counting; its live gauges are removed by gunicorn's ``child_exit`` hook,
config/gunicorn.conf.py). When the variable is not set, a private temporary
directory is made at the first import, so metrics work by default; gunicorn's
master makes it before forking, so all workers share it.

Labels have bounded values only: route names, status codes, fixed outcome and
reason names. Never a client id, subject, URL or anything a client chose.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import tempfile
import typing as t

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
#: In a directory a process made for itself, this file holds its pid. A child
#: that inherits the variable (a gunicorn started by a test, the demo) makes
#: its own: it must neither write into nor clear another process's values.
PRIVATE_MARKER = "private-to-pid"


def _private_to_another(path: str) -> bool:
    try:
        with open(os.path.join(path, PRIVATE_MARKER)) as marker:
            return marker.read().strip() != str(os.getpid())
    except OSError:
        return False


def _multiproc_dir() -> str:
    """The shared directory, made private and empty if nobody set one."""
    path = os.environ.get(MULTIPROC_DIR_VARIABLE)
    if not path or _private_to_another(path):
        path = tempfile.mkdtemp(prefix="mcp-oauth-proxy-metrics-")
        with open(os.path.join(path, PRIVATE_MARKER), "w") as marker:
            marker.write(str(os.getpid()))
        os.environ[MULTIPROC_DIR_VARIABLE] = path
        creator = os.getpid()

        def _remove() -> None:
            if os.getpid() == creator:  # not a forked child on its way out
                shutil.rmtree(path, ignore_errors=True)

        atexit.register(_remove)
    return path


MULTIPROC_DIR = _multiproc_dir()

# The value class is chosen when prometheus_client is imported: only now that
# the directory is known.
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402
from prometheus_client import Counter  # noqa: E402
from prometheus_client import Gauge  # noqa: E402
from prometheus_client import Histogram  # noqa: E402
from prometheus_client import generate_latest  # noqa: E402
from prometheus_client import multiprocess  # noqa: E402
from prometheus_client import values  # noqa: E402

if not getattr(values.ValueClass, "_multiprocess", False):
    # prometheus_client was imported before the directory was set (a test
    # plugin, another library): switch to multiprocess values now, before
    # the first metric below is made.
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]

if t.TYPE_CHECKING:
    from proxy.observability.events import Event

PREFIX = "mcp_oauth_proxy"
CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Latency buckets in seconds: from a cached token check to a slow IdP.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

HTTP_REQUESTS = Counter(
    f"{PREFIX}_http_requests",
    "HTTP requests answered, by endpoint (route name), method and status.",
    ["endpoint", "method", "status"],
    registry=None,
)
HTTP_LATENCY = Histogram(
    f"{PREFIX}_http_request_duration_seconds",
    "Time to the response headers, by endpoint (route name).",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)
EVENTS = Counter(
    f"{PREFIX}_events",
    "Flow steps by event name and outcome, with the reason when it is a known one "
    "(code.replayed, refresh.reuse_detected, grant.revoked, redirect_uri.refused...).",
    ["event", "outcome", "reason"],
    registry=None,
)
UPSTREAM_REQUESTS = Counter(
    f"{PREFIX}_upstream_requests",
    "Requests to the identity provider by endpoint and outcome.",
    ["endpoint", "outcome"],
    registry=None,
)
UPSTREAM_LATENCY = Histogram(
    f"{PREFIX}_upstream_request_duration_seconds",
    "Latency of requests to the identity provider by endpoint.",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)
DOCUMENT_FETCHES = Counter(
    f"{PREFIX}_document_fetches",
    "Fetches of client documents (CIMD metadata, jwks_uri) by kind and outcome.",
    ["kind", "outcome"],
    registry=None,
)
DOCUMENT_CACHE = Counter(
    f"{PREFIX}_document_cache_lookups",
    "Client-document cache lookups by kind and result (hit, miss, negative).",
    ["kind", "result"],
    registry=None,
)
RATE_LIMITED = Counter(
    f"{PREFIX}_rate_limited",
    "Requests refused by a rate limit, by endpoint.",
    ["endpoint"],
    registry=None,
)
GATEWAY_BACKEND = Counter(
    f"{PREFIX}_gateway_backend_requests",
    "Requests relayed to the MCP backend by status (or error).",
    ["status"],
    registry=None,
)
GATEWAY_BACKEND_LATENCY = Histogram(
    f"{PREFIX}_gateway_backend_duration_seconds",
    "Time until the MCP backend's response headers.",
    buckets=LATENCY_BUCKETS,
    registry=None,
)
GATEWAY_OPEN_STREAMS = Gauge(
    f"{PREFIX}_gateway_open_streams",
    "Relayed MCP streams open now, summed over the live workers.",
    multiprocess_mode="livesum",
    registry=None,
)
REDIS_ERRORS = Counter(
    f"{PREFIX}_redis_errors",
    "Requests that failed because Redis was unavailable, by cause.",
    ["cause"],
    registry=None,
)

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_STATUS = re.compile(r"\A[1-5][0-9][0-9]\Z")
#: Reasons worth a label: a closed set of short names. Anything else is "other".
_REASON = re.compile(r"\A[a-z][a-z0-9_]{0,39}\Z")


def label_reason(reason: object) -> str:
    """A reason as a label: an identifier our code raises with, else "other".

    Reasons are constants in the code (`code_replayed`, `rt_reused`,
    `upstream_<kind>`, ...), so the set is bounded by the code itself, not
    by traffic. Free text (a document's "…answered 404") never matches the
    identifier pattern and becomes "other", so no URL or id becomes a label.
    """
    if not isinstance(reason, str):
        return ""
    return reason if _REASON.match(reason) else "other"


def label_outcome(outcome: str) -> str:
    return outcome if _REASON.match(outcome) and len(outcome) <= 16 else "other"


#: Label values are normalised to closed sets first (see the module
#: docstring), so these caches of labelled children stay small; they skip
#: prometheus_client's per-call label validation on the request path.
_CHILDREN_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=_CHILDREN_CACHE_SIZE)
def _event_counter(name: str, outcome: str, reason: str) -> t.Any:
    return EVENTS.labels(event=name, outcome=outcome, reason=reason)


@functools.lru_cache(maxsize=_CHILDREN_CACHE_SIZE)
def _request_series(endpoint: str, method: str, status: str) -> t.Any:
    return (
        HTTP_REQUESTS.labels(endpoint=endpoint, method=method, status=status),
        HTTP_LATENCY.labels(endpoint=endpoint),
    )


def count_event(event: Event) -> None:
    """The events sink: one increment per event, never a field but the reason."""
    _event_counter(
        event.name,  # from NAMES: a closed set (emit() refuses others)
        label_outcome(event.outcome),
        label_reason(event.fields.get("reason")),
    ).inc()


def observe_request(
    endpoint: str | None, method: str, status: int, seconds: float
) -> None:
    requests, latency = _request_series(
        endpoint or "unmatched",
        method if method in METHODS else "other",
        str(status) if 100 <= status <= 599 else "other",
    )
    requests.inc()
    latency.observe(seconds)


#: The IdP endpoints the upstream code calls (the ``endpoint`` label).
UPSTREAM_ENDPOINTS = frozenset({"discovery", "token", "userinfo", "jwks", "api"})


def observe_upstream(endpoint: str, outcome: str, seconds: float) -> None:
    """One request to the IdP: outcome is ``ok``, ``http_4xx``, ``http_5xx``,
    ``network_error``, or ``closed_unanswered`` (a connection closed before
    any answer, sent again: proxy/upstream/http.py)."""
    name = endpoint if endpoint in UPSTREAM_ENDPOINTS else "other"
    UPSTREAM_REQUESTS.labels(endpoint=name, outcome=outcome).inc()
    UPSTREAM_LATENCY.labels(endpoint=name).observe(seconds)


def observe_backend(status: str, seconds: float) -> None:
    """One request relayed to the MCP backend: its status code, or why none."""
    _backend_series(status).inc()
    GATEWAY_BACKEND_LATENCY.observe(seconds)


@functools.lru_cache(maxsize=_CHILDREN_CACHE_SIZE)
def _backend_series(status: str) -> t.Any:
    label = status if _STATUS.match(status) or status in ("timeout",) else "unreachable"
    return GATEWAY_BACKEND.labels(status=label)


def status_outcome(status: int) -> str:
    if status < 400:
        return "ok"
    return "http_4xx" if status < 500 else "http_5xx"


def render() -> bytes:
    """The Prometheus text of every worker's values, summed."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
        registry, path=MULTIPROC_DIR
    )
    return generate_latest(registry)


def clear_directory(path: str) -> None:
    """Remove every value file: a master starting afresh (no worker runs yet)."""
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.remove(os.path.join(path, name))
