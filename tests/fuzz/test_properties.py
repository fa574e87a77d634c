"""The fuzz properties themselves catch what they claim to (checked on a
deliberately broken toy app), so a green fuzz run means something."""

from __future__ import annotations

import typing as t

import pytest
import redis
from flask import Flask
from flask import Response
from flask import jsonify

from .properties import Fuzzer

PREFIX = "selftest:"


@pytest.fixture
def toy(real_redis: redis.Redis) -> Fuzzer:
    app = Flask(__name__)

    @app.post("/oauth2/token")
    def _refuse_and_write() -> t.Any:
        real_redis.set(PREFIX + "grant:{g}", "changed")
        real_redis.set(PREFIX + "rate:ip:token:1.2.3.4", "1")
        response = jsonify({"error": "invalid_request"})
        response.status_code = 400
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.post("/oauth2/revoke")
    def _refuse_counting_only() -> t.Any:
        real_redis.set(PREFIX + "authfail:{1.2.3.4 c}", "1")
        response = jsonify({"error": "invalid_client"})
        response.status_code = 401
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.post("/oauth2/introspect")
    def _refuse_and_persist() -> t.Any:
        real_redis.persist(PREFIX + "client:c")
        response = jsonify({"error": "invalid_client"})
        response.status_code = 401
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/crash")
    def _crash() -> Response:
        return Response("Traceback (most recent call last):", status=400)

    @app.get("/fail")
    def _fail() -> Response:
        return Response("oops", status=502)

    @app.post("/oauth2/register")
    def _bare_error() -> Response:
        return Response("bad", status=400)

    real_redis.set(PREFIX + "grant:{g}", "original")
    real_redis.set(PREFIX + "client:c", "{}", ex=600)
    return Fuzzer(app.test_client(), real_redis, PREFIX)


def test_a_refusal_that_writes_state_fails(toy: Fuzzer) -> None:
    with pytest.raises(AssertionError, match="changed 'grant:"):
        toy.send("POST", "/oauth2/token")


def test_a_refusal_that_drops_a_ttl_fails(toy: Fuzzer) -> None:
    with pytest.raises(AssertionError, match="changed 'client:c \\(expires\\)'"):
        toy.send("POST", "/oauth2/introspect")


def test_a_refusal_that_only_counts_passes(toy: Fuzzer) -> None:
    assert toy.send("POST", "/oauth2/revoke").status_code == 401


@pytest.mark.parametrize("path", ["/crash", "/fail"])
def test_tracebacks_and_5xx_fail(toy: Fuzzer, path: str) -> None:
    with pytest.raises(AssertionError):
        toy.send("GET", path)


def test_an_oauth_error_without_json_fails(toy: Fuzzer) -> None:
    with pytest.raises(AssertionError):
        toy.send("POST", "/oauth2/register")
