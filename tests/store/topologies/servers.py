"""Real Redis topologies for the tests: TLS with an ACL user, Sentinel, Cluster.

Each starter runs redis-server processes through support/processes.py (own
process group, bounded readiness, log in the error) and returns what a client
needs to reach them. Persistence is off everywhere; every process stops with
the returned object's ``close()``.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import redis
import trustme

from support.processes import ManagedProcess
from support.processes import ProcessStartError
from support.processes import free_port
from support.processes import start_process

ACL_USER = "proxy"
ACL_PASSWORD = "s3cret-acl-password"
SENTINEL_MASTER = "proxymaster"
#: What the proxy needs: its keys, scripts, and INFO for `check`; no admin.
ACL_RULES = "on >{password} ~* &* +@all -@dangerous +info +config|get"


def _redis_server() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ProcessStartError("redis-server is not installed")
    return binary


def _base_args(port: int, workdir: Path) -> list[str]:
    return [
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        # A replica's first sync starts at once, not after diskless sync's
        # default 5 s wait for more replicas.
        "--repl-diskless-sync-delay",
        "0",
    ]


def _pings(port: int, **kwargs: object) -> bool:
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0, **kwargs)  # type: ignore[arg-type]
    try:
        return bool(client.ping())
    finally:
        client.close()


@dataclass
class Servers:
    """Processes that stop together, and the scratch directory they used."""

    workdir: Path
    processes: list[ManagedProcess] = field(default_factory=list)

    def close(self) -> None:
        for proc in reversed(self.processes):
            proc.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def tls_supported() -> bool:
    """Whether this redis-server was built with TLS (Debian's is).

    A TLS build given no port at all says it will not listen anywhere; a
    build without TLS refuses the ``tls-port`` directive first.
    """
    probe = subprocess.run(
        [_redis_server(), "--port", "0", "--tls-port", "0"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return "not listen anywhere" in probe.stdout + probe.stderr


# -- TLS + ACL --------------------------------------------------------------------


@dataclass
class TLSRedis(Servers):
    port: int = 0
    ca_file: str = ""
    client_cert: str = ""
    client_key: str = ""

    @property
    def url(self) -> str:
        """A ``rediss://`` URL without credentials (they come separately)."""
        return f"rediss://127.0.0.1:{self.port}/0"


def start_tls_redis() -> TLSRedis:
    """redis-server on TLS only, requiring a client certificate, with the ACL
    user ``proxy`` and the default user switched off."""
    workdir = Path(tempfile.mkdtemp(prefix="redis-tls-"))
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    client_cert = ca.issue_cert("proxy-client")
    paths = {
        "ca": workdir / "ca.pem",
        "server": workdir / "server.pem",
        "server_key": workdir / "server.key",
        "client": workdir / "client.pem",
        "client_key": workdir / "client.key",
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server_cert.private_key_pem.write_to_path(str(paths["server_key"]))
    for blob in server_cert.cert_chain_pems:
        blob.write_to_path(str(paths["server"]), append=True)
    client_cert.private_key_pem.write_to_path(str(paths["client_key"]))
    for blob in client_cert.cert_chain_pems:
        blob.write_to_path(str(paths["client"]), append=True)
    port = free_port()
    argv = [_redis_server(), *_base_args(0, workdir)]
    argv += ["--tls-port", str(port), "--tls-auth-clients", "yes"]
    argv += ["--tls-cert-file", str(paths["server"])]
    argv += ["--tls-key-file", str(paths["server_key"])]
    argv += ["--tls-ca-cert-file", str(paths["ca"])]
    acl = workdir / "users.acl"
    acl.write_text(
        f"user default off\nuser {ACL_USER} {ACL_RULES.format(password=ACL_PASSWORD)}\n"
    )
    argv += ["--aclfile", str(acl)]
    servers = TLSRedis(
        workdir,
        port=port,
        ca_file=str(paths["ca"]),
        client_cert=str(paths["client"]),
        client_key=str(paths["client_key"]),
    )

    def ready() -> bool:
        return _pings(
            port,
            ssl=True,
            ssl_ca_certs=servers.ca_file,
            ssl_certfile=servers.client_cert,
            ssl_keyfile=servers.client_key,
            username=ACL_USER,
            password=ACL_PASSWORD,
        )

    servers.processes.append(
        start_process(
            "redis-tls", argv, port=port, url=servers.url, ready=ready, timeout=15
        )
    )
    return servers


# -- Sentinel -----------------------------------------------------------------------


@dataclass
class SentinelRedis(Servers):
    """A primary, its replicas and one sentinel (quorum 1) watching them."""

    sentinel_port: int = 0
    data_ports: tuple[int, ...] = ()

    @property
    def sentinels(self) -> tuple[tuple[str, int], ...]:
        return (("127.0.0.1", self.sentinel_port),)

    def sentinel(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.sentinel_port, decode_responses=True
        )

    def primary_port(self) -> int:
        with contextlib.closing(self.sentinel()) as sentinel:
            _, port = sentinel.sentinel_get_master_addr_by_name(SENTINEL_MASTER)
        return int(port)

    def failover(self, timeout: float = 30.0) -> int:
        """SENTINEL FAILOVER, then wait until it is over: the sentinel names a
        replica, now a primary, and the old primary follows it (Sentinel
        turns it into a replica at its next INFO, up to 10 s later). The new
        primary's port."""
        old = self.primary_port()
        with contextlib.closing(self.sentinel()) as sentinel:
            sentinel.execute_command("SENTINEL", "FAILOVER", SENTINEL_MASTER)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = self.primary_port()
            if new != old and _role(new) == "master" and _link_up(old):
                return new
            time.sleep(0.1)
        raise AssertionError(f"failover from {old} did not complete")


def _role(port: int) -> str:
    with contextlib.closing(redis.Redis(port=port, decode_responses=True)) as r:
        return str(r.info("replication")["role"])


def _link_up(port: int) -> bool:
    with contextlib.closing(redis.Redis(port=port, decode_responses=True)) as r:
        info = r.info("replication")
    return info.get("role") == "slave" and info.get("master_link_status") == "up"


def start_sentinel_redis(replicas: int = 1) -> SentinelRedis:
    """With two replicas a failover leaves the new primary one at once, so
    ``min-replicas-to-write 1`` lets it write without waiting for the old
    primary to be turned into a replica (up to Sentinel's 10 s INFO period)."""
    workdir = Path(tempfile.mkdtemp(prefix="redis-sentinel-"))
    primary, sentinel = free_port(), free_port()
    replica_ports = [free_port() for _ in range(replicas)]
    servers = SentinelRedis(
        workdir, sentinel_port=sentinel, data_ports=(primary, *replica_ports)
    )
    nodes: list[tuple[str, int, list[str]]] = [("redis-primary", primary, [])]
    for index, port in enumerate(replica_ports):
        follow = ["--replicaof", "127.0.0.1", str(primary)]
        nodes.append((f"redis-replica-{index}", port, follow))
    try:
        for name, port, extra in nodes:
            # A primary cut off from its replica refuses writes (NOREPLICAS):
            # a demoted primary cannot take writes the failover would drop.
            extra = [*extra, "--min-replicas-to-write", "1"]
            extra += ["--min-replicas-max-lag", "10"]
            node_dir = workdir / name
            node_dir.mkdir()
            argv = [_redis_server(), *_base_args(port, node_dir), *extra]
            servers.processes.append(
                start_process(
                    name,
                    argv,
                    port=port,
                    url=f"redis://127.0.0.1:{port}",
                    ready=lambda port=port: _pings(port),  # type: ignore[misc]
                    timeout=15,
                )
            )
        conf = workdir / "sentinel.conf"
        conf.write_text(
            f"port {sentinel}\nbind 127.0.0.1\ndir {workdir}\n"
            f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {primary} 1\n"
            f"sentinel down-after-milliseconds {SENTINEL_MASTER} 2000\n"
            f"sentinel failover-timeout {SENTINEL_MASTER} 10000\n"
        )

        def knows_replicas() -> bool:
            if not all(_link_up(port) for port in replica_ports):
                return False
            # min-replicas-to-write counts a replica once it has acknowledged.
            with contextlib.closing(redis.Redis(port=primary)) as client:
                good = client.info("replication").get("min_slaves_good_slaves", 0)
            if int(good) < 1:
                return False
            with contextlib.closing(servers.sentinel()) as client:
                known = client.sentinel_slaves(SENTINEL_MASTER)
            up = {r["port"] for r in known if "s_down" not in r["flags"]}
            return up >= set(replica_ports)

        servers.processes.append(
            start_process(
                "redis-sentinel",
                [_redis_server(), str(conf), "--sentinel"],
                port=sentinel,
                url=f"redis://127.0.0.1:{sentinel}",
                ready=knows_replicas,
                timeout=20,
            )
        )
    except BaseException:
        servers.close()
        raise
    return servers


# -- Cluster ------------------------------------------------------------------------


@dataclass
class ClusterRedis(Servers):
    """Three primaries, no replicas, every slot covered."""

    ports: tuple[int, ...] = ()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"


def start_cluster_redis(primaries: int = 3) -> ClusterRedis:
    workdir = Path(tempfile.mkdtemp(prefix="redis-cluster-"))
    servers = ClusterRedis(workdir)
    ports = []
    try:
        for index in range(primaries):
            port = free_port()
            node_dir = workdir / f"node-{index}"
            node_dir.mkdir()
            argv = [_redis_server(), *_base_args(port, node_dir)]
            argv += ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]
            # The bus port is chosen, not port + 10000, which may be taken.
            argv += ["--cluster-port", str(free_port())]
            argv += ["--cluster-config-file", str(node_dir / "nodes.conf")]
            servers.processes.append(
                start_process(
                    f"redis-cluster-{index}",
                    argv,
                    port=port,
                    url=f"redis://127.0.0.1:{port}",
                    ready=lambda port=port: _pings(port),  # type: ignore[misc]
                    timeout=15,
                )
            )
            ports.append(port)
        servers.ports = tuple(ports)
        cli = shutil.which("redis-cli")
        if cli is None:
            raise ProcessStartError("redis-cli is not installed (redis-tools)")
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports)]
            + ["--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + 20
        while not all(_cluster_ok(p) for p in ports):
            if time.monotonic() > deadline:
                raise ProcessStartError("the cluster never reached cluster_state:ok")
            time.sleep(0.1)
    except BaseException:
        servers.close()
        raise
    return servers


def _cluster_ok(port: int) -> bool:
    with contextlib.closing(redis.Redis(port=port, decode_responses=True)) as r:
        info = r.execute_command("CLUSTER", "INFO")
    text = info if isinstance(info, str) else str(info)
    return "cluster_state:ok" in text
