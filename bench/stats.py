"""Latency and throughput summaries for the results document."""

from __future__ import annotations

import typing as t

from .load import Recorder
from .load import RunStats
from .load import percentile


def ms(value: float | None) -> float | None:
    """Seconds to milliseconds, rounded for the document (None stays None)."""
    return None if value is None else round(value * 1000, 2)


def stats_summary(stats: RunStats) -> dict[str, t.Any]:
    return {
        "requests": stats.completed,
        "errors": stats.failed,
        "seconds": round(stats.elapsed, 3),
        "per_second": round(stats.rate, 1),
        "p50_ms": ms(percentile(stats.latencies, 50)),
        "p99_ms": ms(percentile(stats.latencies, 99)),
    }


def step_latencies(rec: Recorder) -> dict[str, t.Any]:
    """p50 and p99 of each step a recorder timed."""
    return {
        name: {
            "count": len(values),
            "p50_ms": ms(percentile(values, 50)),
            "p99_ms": ms(percentile(values, 99)),
        }
        for name, values in rec.latencies.items()
        if values
    }
