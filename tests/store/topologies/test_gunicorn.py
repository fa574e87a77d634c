"""The proxy as deployed (gunicorn, two workers) on a three-primary Redis
Cluster, and on Sentinel (no REDIS_URL: gunicorn must still allow several
workers): logins redeemed, refreshed and revoked over HTTP on whichever
worker answers."""

from __future__ import annotations

import typing as t
from collections.abc import Iterator

import pytest
import requests

from support.processes import ManagedProcess
from support.processes import free_port
from support.processes import start_proxy
from tests.e2e.stack import proxy_env
from tests.oauth_client import OAuthTestClient

from .servers import SENTINEL_MASTER

if t.TYPE_CHECKING:
    from .servers import ClusterRedis
    from .servers import SentinelRedis

LOGINS = 4


class _Response:
    """A requests response seen through the Flask test client's interface."""

    def __init__(self, response: requests.Response) -> None:
        self.status_code = response.status_code
        self.headers = response.headers
        self._response = response

    def get_data(self, as_text: bool = False) -> str:
        return self._response.text

    def get_json(self) -> t.Any:
        return self._response.json()


class HTTPClient:
    """Just enough of Flask's test client for OAuthTestClient, over real HTTP."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def get(self, path: str, query_string: t.Any = None) -> _Response:
        response = self.session.get(
            self.base_url + path,
            params=query_string,
            allow_redirects=False,
            timeout=10,
        )
        return _Response(response)

    def post(self, path: str, *, data: t.Any = None, json: t.Any = None) -> _Response:
        response = self.session.post(
            self.base_url + path,
            data=data,
            json=json,
            allow_redirects=False,
            timeout=10,
        )
        return _Response(response)


def _redis_env(request: pytest.FixtureRequest, mode: str) -> dict[str, str]:
    if mode == "cluster":
        cluster: ClusterRedis = request.getfixturevalue("cluster_redis")
        return {"REDIS_MODE": "cluster", "REDIS_URL": cluster.url}
    sentinel: SentinelRedis = request.getfixturevalue("sentinel_redis")
    host, port = sentinel.sentinels[0]
    return {
        "REDIS_MODE": "sentinel",
        "REDIS_SENTINELS": f"{host}:{port}",
        "REDIS_SENTINEL_MASTER": SENTINEL_MASTER,
        "REDIS_WAIT_REPLICAS": "1",
    }


@pytest.fixture(params=["cluster", "sentinel"])
def proxy(request: pytest.FixtureRequest, idp_url: str) -> Iterator[ManagedProcess]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = proxy_env(
        public_url=url,
        idp_url=idp_url,
        audience=url + "/mcp",
        redis_url="",
        overrides={"AUDIT_LOG": "false", **_redis_env(request, request.param)},
    )
    if not env["REDIS_URL"]:
        del env["REDIS_URL"]
    proc = start_proxy(env, port=port, workers=2)
    yield proc
    proc.close()


def test_two_gunicorn_workers_serve_the_flow_on_the_topology(
    proxy: ManagedProcess,
) -> None:
    oauth = OAuthTestClient(HTTPClient(proxy.url))
    for n in range(LOGINS):
        client_id, body = oauth.tokens(user=f"user{n}@example.com")
        refreshed = oauth.refresh(client_id, body["refresh_token"])
        assert refreshed.status_code == 200, refreshed.get_data(as_text=True)
        token = refreshed.get_json()["refresh_token"]
        revoked = oauth.client.post(
            "/oauth2/revoke", data={"token": token, "client_id": client_id}
        )
        assert revoked.status_code == 200
        assert oauth.refresh(client_id, token).status_code == 400
    assert len(proxy.worker_pids()) == 2
    ready = requests.get(proxy.url + "/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    assert "Traceback" not in proxy.output()
