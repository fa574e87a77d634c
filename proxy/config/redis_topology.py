"""REDIS_*: which Redis topology the store uses, and how it authenticates.

Three modes, each redis-py's own client (``proxy/store/connection.py``):

- ``standalone`` (default): ``REDIS_URL``, ``redis://``, ``rediss://`` (TLS)
  or ``unix://``; unset, the store is embedded (one process only).
- ``sentinel``: ``REDIS_SENTINELS=host:port,...`` and ``REDIS_SENTINEL_MASTER``
  find the primary; ``REDIS_TLS`` and ``REDIS_DB`` say how to talk to it.
- ``cluster``: ``REDIS_URL`` names any one node of a Redis Cluster.

ACL credentials come in the URL or as ``REDIS_USERNAME`` / ``REDIS_PASSWORD``
(or ``REDIS_PASSWORD_FILE``), never both; the sentinels have their own
(``REDIS_SENTINEL_USERNAME`` / ``REDIS_SENTINEL_PASSWORD``,
``REDIS_SENTINEL_TLS``). ``REDIS_CA_FILE``, ``REDIS_CLIENT_CERT`` and
``REDIS_CLIENT_KEY`` serve every TLS connection. ``REDIS_WAIT_REPLICAS``
makes a code redemption or refresh rotation wait for that many replicas
(Sentinel: a failover cannot drop a token the client was given). A variable
that the chosen mode would ignore is refused: a setting silently ignored is
a misconfiguration found in production.
"""

from __future__ import annotations

import dataclasses
import os
import typing as t
from urllib.parse import urlsplit

from proxy.config.env import ConfigError
from proxy.store.connection import CLUSTER
from proxy.store.connection import CLUSTER_PIPELINES_RUN_SCRIPTS
from proxy.store.connection import CLUSTER_UNSUPPORTED
from proxy.store.connection import MODES
from proxy.store.connection import SENTINEL
from proxy.store.connection import STANDALONE
from proxy.store.connection import RedisOptions
from proxy.store.connection import mask_url

if t.TYPE_CHECKING:
    from proxy.config.env import EnvReader

_URL_SCHEMES = {
    STANDALONE: ("redis", "rediss", "unix"),
    CLUSTER: ("redis", "rediss"),
}
_SENTINEL_ONLY = (
    "REDIS_SENTINELS",
    "REDIS_SENTINEL_MASTER",
    "REDIS_SENTINEL_USERNAME",
    "REDIS_SENTINEL_PASSWORD",
    "REDIS_SENTINEL_PASSWORD_FILE",
    "REDIS_SENTINEL_TLS",
    "REDIS_TLS",
    "REDIS_DB",
)


def redis_options(env: EnvReader) -> RedisOptions:
    """Read and check every REDIS_* variable (REDIS_KEY_PREFIX excepted)."""
    mode = env.text("REDIS_MODE", STANDALONE).lower()
    if mode not in MODES:
        raise ConfigError(
            f"REDIS_MODE={mode!r} is not known: use one of {', '.join(MODES)}"
        )
    username = env.text("REDIS_USERNAME") or None
    password = _secret(env, "REDIS_PASSWORD")
    if mode == SENTINEL:
        return _sentinel(env, username, password)
    for name in _SENTINEL_ONLY:
        if env.text(name):
            raise ConfigError(f"{name} works only with REDIS_MODE=sentinel")
    url = env.text("REDIS_URL", required=mode == CLUSTER) or None
    tls = _check_url(url, mode, username, password)
    acks = _replica_acks(env, mode)
    options = RedisOptions(
        url=url,
        mode=mode,
        username=username,
        password=password,
        tls=tls,
        replica_acks=acks,
    )
    return _with_certificates(env, options)


def _replica_acks(env: EnvReader, mode: str) -> int:
    """REDIS_WAIT_REPLICAS: WAIT after a redemption or rotation. A cluster
    would send WAIT to an arbitrary node (it names no key): refused there."""
    acks = env.integer("REDIS_WAIT_REPLICAS", 0, 0, 16)
    if acks and mode == CLUSTER:
        raise ConfigError("REDIS_WAIT_REPLICAS works only without REDIS_MODE=cluster")
    return acks


def _secret(env: EnvReader, name: str) -> str | None:
    """`name` or `name`_FILE (a mounted secret): a trailing newline is not part
    of a password."""
    value = env.file_or_value(name)
    return value.strip() or None if value is not None else None


def _check_url(
    url: str | None, mode: str, username: str | None, password: str | None
) -> bool:
    """The URL's scheme, credentials and database fit the mode; True for TLS."""
    if url is None:
        if username or password:
            raise ConfigError("REDIS_USERNAME and REDIS_PASSWORD need REDIS_URL")
        return False
    parts = urlsplit(url)
    schemes = _URL_SCHEMES[mode]
    if parts.scheme not in schemes:
        allowed = " or ".join(scheme + "://" for scheme in schemes)
        raise ConfigError(
            f"REDIS_URL={mask_url(url)!r}: use a {allowed} URL, "
            "e.g. REDIS_URL=rediss://redis.internal:6380/0"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(f"REDIS_URL={mask_url(url)!r} names no host")
    if (parts.username or parts.password) and (username or password):
        raise ConfigError(
            "REDIS_URL carries a user or password already: drop it there or "
            "unset REDIS_USERNAME / REDIS_PASSWORD"
        )
    if mode == CLUSTER and parts.path.strip("/") not in ("", "0"):
        raise ConfigError(
            f"REDIS_URL={mask_url(url)!r}: a Redis Cluster has only database 0"
        )
    return parts.scheme == "rediss"


def _sentinel(
    env: EnvReader, username: str | None, password: str | None
) -> RedisOptions:
    if env.text("REDIS_URL"):
        raise ConfigError(
            "REDIS_URL is not used with REDIS_MODE=sentinel: the sentinels name "
            "the primary; set REDIS_SENTINELS and REDIS_SENTINEL_MASTER"
        )
    sentinels = tuple(_host_port(item) for item in env.items("REDIS_SENTINELS"))
    if not sentinels:
        raise ConfigError(
            "REDIS_SENTINELS is not set: REDIS_MODE=sentinel needs "
            "REDIS_SENTINELS=host:port,host:port"
        )
    master = env.text("REDIS_SENTINEL_MASTER", required=True)
    options = RedisOptions(
        mode=SENTINEL,
        username=username,
        password=password,
        tls=env.flag("REDIS_TLS", False),
        db=env.integer("REDIS_DB", 0, 0, 15),
        sentinels=sentinels,
        sentinel_master=master,
        sentinel_username=env.text("REDIS_SENTINEL_USERNAME") or None,
        sentinel_password=_secret(env, "REDIS_SENTINEL_PASSWORD"),
        sentinel_tls=env.flag("REDIS_SENTINEL_TLS", False),
        replica_acks=_replica_acks(env, SENTINEL),
    )
    return _with_certificates(env, options)


def _host_port(item: str) -> tuple[str, int]:
    host, _, port = item.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"REDIS_SENTINELS: {item!r} is not host:port, "
            "e.g. REDIS_SENTINELS=10.0.0.1:26379,10.0.0.2:26379"
        )
    return host, int(port)


def _with_certificates(env: EnvReader, options: RedisOptions) -> RedisOptions:
    """REDIS_CA_FILE, REDIS_CLIENT_CERT, REDIS_CLIENT_KEY: readable, paired,
    and only where some connection is TLS."""
    files = {}
    for name in ("REDIS_CA_FILE", "REDIS_CLIENT_CERT", "REDIS_CLIENT_KEY"):
        path = env.text(name) or None
        if path is not None and not os.access(path, os.R_OK):
            raise ConfigError(f"{name}={path!r} is not a readable file")
        files[name] = path
    if bool(files["REDIS_CLIENT_CERT"]) != bool(files["REDIS_CLIENT_KEY"]):
        raise ConfigError(
            "REDIS_CLIENT_CERT and REDIS_CLIENT_KEY go together: set both or neither"
        )
    if any(files.values()) and not (options.tls or options.sentinel_tls):
        raise ConfigError(
            "REDIS_CA_FILE / REDIS_CLIENT_CERT need TLS: use a rediss:// REDIS_URL "
            "(or REDIS_TLS=true / REDIS_SENTINEL_TLS=true with Sentinel)"
        )
    return dataclasses.replace(
        options,
        ca_file=files["REDIS_CA_FILE"],
        client_cert=files["REDIS_CLIENT_CERT"],
        client_key=files["REDIS_CLIENT_KEY"],
    )


def check_cluster_fit(prefix: str, options: RedisOptions) -> None:
    """In a cluster, a brace in REDIS_KEY_PREFIX would become the hash tag of
    every key and undo the per-grant tags (docs/storage-schema.md); and the
    installed redis-py must pipeline scripts in a cluster. Checked last, so
    every other REDIS_* error is reported first."""
    if options.mode != CLUSTER:
        return
    if "{" in prefix or "}" in prefix:
        raise ConfigError(
            f"REDIS_KEY_PREFIX={prefix!r}: no braces with REDIS_MODE=cluster "
            "(the keys carry their own hash tags)"
        )
    if not CLUSTER_PIPELINES_RUN_SCRIPTS:
        raise ConfigError(CLUSTER_UNSUPPORTED)


def shared_store(env: EnvReader) -> RedisOptions:
    """The operator tools' store (``python -m proxy trace|admin|keys``): the
    same REDIS_* settings as the service, and never the embedded store, which
    would be an empty one of the tool's own."""
    options = redis_options(env)
    if not options.configured:
        env.text("REDIS_URL", required=True)
    return options
