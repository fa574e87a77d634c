"""proxy/store/faults.py: which Redis errors are an outage (503), which a bug (500)."""

from __future__ import annotations

import pytest
import redis.exceptions
import redis.sentinel

from proxy.store.faults import unavailable_cause


@pytest.mark.parametrize(
    ("exc", "cause"),
    [
        (redis.exceptions.ConnectionError("refused"), "unreachable"),
        (redis.exceptions.TimeoutError("timed out"), "timeout"),
        (redis.exceptions.BusyLoadingError("loading"), "loading"),
        (redis.exceptions.OutOfMemoryError("command not allowed"), "out_of_memory"),
        (redis.exceptions.ReadOnlyError("You can't write"), "read_only"),
        (redis.sentinel.MasterNotFoundError("No master found"), "no_primary"),
        (
            # min-replicas-to-write: a primary cut off from its replicas.
            redis.exceptions.ResponseError(
                "NOREPLICAS Not enough good replicas to write. script: abc, "
                "on @user_script:1."
            ),
            "no_replicas",
        ),
        (redis.exceptions.SlotNotCoveredError("Slot 42 not covered"), "cluster_down"),
        (
            redis.exceptions.ResponseError(
                "MISCONF Redis is configured to save RDB snapshots, but it's "
                "currently unable to persist to disk."
            ),
            "writes_disabled",
        ),
        (
            # Redis 6: an OOM inside a script comes back wrapped in ERR.
            redis.exceptions.ResponseError(
                "Error running script (call to f_abc): @user_script:1: "
                "@user_script: 1: -OOM command not allowed when used memory "
                "> 'maxmemory'."
            ),
            "out_of_memory",
        ),
        (
            redis.exceptions.ResponseError(
                "ERR Error running script (call to f_abc): @user_script:1: "
                "OOM command not allowed when used memory > 'maxmemory'."
            ),
            "out_of_memory",
        ),
        (
            redis.exceptions.ResponseError(
                "Command # 2 (EVALSHA abc 1 k READONLY) of pipeline caused error: "
                "OOM command not allowed when used memory > 'maxmemory'."
            ),
            "out_of_memory",
        ),
    ],
)
def test_refusals_are_outages(exc: Exception, cause: str | None) -> None:
    assert unavailable_cause(exc) == cause


@pytest.mark.parametrize(
    "message",
    [
        "ERR unknown command 'FOO'",
        "WRONGTYPE Operation against a key holding the wrong kind of value",
        # A client's input echoed in a pipeline's prefix does not make an outage.
        "Command # 1 (SET k READONLY MISCONF OOM) of pipeline caused error: "
        "ERR syntax error",
    ],
)
def test_our_own_mistakes_stay_errors(message: str) -> None:
    assert unavailable_cause(redis.exceptions.ResponseError(message)) is None


def test_other_exceptions_are_not_outages() -> None:
    assert unavailable_cause(ValueError("OOM command not allowed")) is None
