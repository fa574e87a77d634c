"""Show the resilience figures in every run's summary, not only with -s."""

from __future__ import annotations

import pytest

from .recorded import RECORDED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RECORDED:
        return
    terminalreporter.section("resilience figures")
    for figures in RECORDED:
        if figures.probes:
            terminalreporter.write_line(figures.report())
        else:
            terminalreporter.write_line(
                f"[{figures.scenario}] {figures.model}: {figures.crowd}"
            )
