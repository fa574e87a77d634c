"""The figures of this run's scenarios: printed at the end of the session, and
written as JSON lines to $RESILIENCE_FIGURES when that is set."""

from __future__ import annotations

import json
import os

from .load import Figures

RECORDED: list[Figures] = []


def record(figures: Figures) -> None:
    RECORDED.append(figures)
    path = os.environ.get("RESILIENCE_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(figures.as_dict()) + "\n")
