"""py-spy on the proxy workers: start it, collect its files, rank the functions."""

from __future__ import annotations

import subprocess
import typing as t
from collections import defaultdict
from pathlib import Path

from support.processes import REPO_ROOT

#: A running py-spy and the file it writes its collapsed stacks to.
Spy = tuple[Path, subprocess.Popen[bytes]]


def start_pyspy(pids: list[int], seconds: float, out_dir: Path) -> list[Spy]:
    started = []
    for pid in pids:
        path = out_dir / f"pyspy-{pid}.txt"
        argv = ["py-spy", "record", "--pid", str(pid), "--duration", str(int(seconds))]
        # --gil: only the thread holding the GIL, i.e. Python CPU time; threads
        # waiting on a socket or a queue would otherwise dominate the samples.
        argv += ["--rate", "200", "--gil", "--format", "raw", "--output", str(path)]
        popen = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        started.append((path, popen))
    return started


def collect(spies: list[Spy], label: str) -> tuple[list[Path], list[str]]:
    """Wait for each py-spy, rename its file `<label>-pyspy-<pid>.txt`; return
    the files and the stderr tails of the ones that failed."""
    errors = []
    for path, popen in spies:
        _, err = popen.communicate(timeout=60)
        if popen.returncode != 0:
            errors.append(err.decode(errors="replace")[-400:])
        path.rename(path.with_name(f"{label}-{path.name}"))
    return sorted(path.parent.glob(f"{label}-pyspy-*.txt")), errors


def summarise_pyspy(files: list[Path], top: int = 25) -> dict[str, t.Any]:
    """Inclusive and self sample shares per function from collapsed stacks."""
    inclusive: dict[str, int] = defaultdict(int)
    self_time: dict[str, int] = defaultdict(int)
    total = 0
    for path in files:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [_name(frame) for frame in stack.split(";")]
            total += count
            for name in set(frames):
                inclusive[name] += count
            self_time[frames[-1]] += count

    def ranked(table: dict[str, int], only_proxy: bool = False) -> list[t.Any]:
        rows = sorted(table.items(), key=lambda kv: -kv[1])
        if only_proxy:
            rows = [kv for kv in rows if "(proxy/" in kv[0]]
        return [(name, round(100 * n / max(1, total), 1)) for name, n in rows[:top]]

    return {
        "samples": total,
        "inclusive_pct": ranked(inclusive, only_proxy=True),
        "self_pct": ranked(self_time),
    }


def _name(frame: str) -> str:
    """`function (file)` without the line number, `proxy/...` for our code."""
    function, _, where = frame.partition(" (")
    path = where.rstrip(")").rpartition(":")[0] or where.rstrip(")")
    marker = str(REPO_ROOT / "proxy") + "/"
    if path.startswith(marker):
        short = "proxy/" + path[len(marker) :]
    elif path.startswith("proxy/"):  # py-spy shows paths under the cwd relative
        short = path
    else:
        parts = path.split("/")
        short = "/".join(parts[-2:])
    return f"{function} ({short})"
