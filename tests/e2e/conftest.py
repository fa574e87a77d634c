"""Fixtures composing the real end-to-end stack (see stack.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Generator
from collections.abc import Iterator
from collections.abc import Mapping

import pytest

from .stack import Stack
from .stack import running_stack


def require_redis_server() -> None:
    """Skip locally without redis-server, but never let CI skip silently."""
    if shutil.which("redis-server") is not None:
        return
    reason = "redis-server is not installed (apt-get install redis-server)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; it is required when CI is set", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def e2e_stack() -> Iterator[Stack]:
    """redis-server, oidc-provider-mock, the proxy (gunicorn, 2 workers) and an
    SDK-built resource server, shared by the whole session."""
    require_redis_server()
    with running_stack() as stack:
        yield stack


class StackFactory:
    """Starts extra stacks and remembers them, so their logs can be dumped."""

    def __init__(self, stacks: contextlib.ExitStack) -> None:
        self._stacks = stacks
        self.started: list[Stack] = []

    def __call__(
        self,
        *,
        proxy_overrides: Mapping[str, str] | None = None,
        workers: int = 2,
        proxy_args: list[str] | None = None,
    ) -> Stack:
        stack = self._stacks.enter_context(
            running_stack(
                proxy_overrides=proxy_overrides,
                workers=workers,
                proxy_args=proxy_args,
            )
        )
        self.started.append(stack)
        return stack


@pytest.fixture(scope="module")
def make_e2e_stack() -> Iterator[StackFactory]:
    """Start extra stacks (e.g. with proxy env overrides); all stop at module end."""
    require_redis_server()
    with contextlib.ExitStack() as stacks:
        yield StackFactory(stacks)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember each phase's report so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"e2e_report_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def _dump_stack_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print every process log after a failing e2e test: the cause is usually there."""
    yield
    report = getattr(request.node, "e2e_report_call", None)
    if report is None or not report.failed:
        return
    if "e2e_stack" in request.fixturenames:
        request.getfixturevalue("e2e_stack").dump_logs()
    if "make_e2e_stack" in request.fixturenames:
        for stack in request.getfixturevalue("make_e2e_stack").started:
            stack.dump_logs()
