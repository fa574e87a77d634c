"""CPU seconds used by each process group (and by the bench client) over a phase."""

from __future__ import annotations

import os

from support.processes import ManagedProcess


def own_cpu_seconds() -> float:
    """This process's user + system CPU time: the load client's own cost."""
    times = os.times()
    return times.user + times.system


class CpuMeter:
    """Started on creation; `stop()` returns CPU seconds per name since then."""

    def __init__(self, named: dict[str, ManagedProcess]) -> None:
        self.named = named
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        values = {name: proc.cpu_seconds() for name, proc in self.named.items()}
        values["bench_client"] = own_cpu_seconds()
        return values

    def stop(self) -> dict[str, float]:
        end = self._read()
        return {k: round(end[k] - self.start[k], 3) for k in end}
