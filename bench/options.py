"""The benchmark's options: parsed by bench/cli.py, read by every phase."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Options:
    workers: int
    clients: int
    concurrency: int
    loop_seconds: float
    flow_seconds: float
    probe_flows: int
    memory_count: int
    gateway_calls: int
    peer: bool
    profile: bool
    quick: bool
    output: Path
    idp_threads: int
    upstream: str
