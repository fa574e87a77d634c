"""What the operator CLIs print: an aligned table for people, JSON for scripts.

Rows are plain dicts, the same for both forms, so ``--json`` can never show
something the table hides (or the reverse). Times stay epoch seconds in JSON
and become UTC in the table.
"""

from __future__ import annotations

import json
import time
import typing as t

#: A column: its header, the row key it shows, and how to format the value.
Column = tuple[str, str, t.Callable[[t.Any], str]]


def text(value: t.Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


def when(value: t.Any) -> str:
    """An epoch time as UTC to the minute; "-" when there is none."""
    if not isinstance(value, (int, float)) or not value:
        return "-"
    return time.strftime("%Y-%m-%d %H:%MZ", time.gmtime(value))


def table(rows: list[dict[str, t.Any]], columns: list[Column]) -> str:
    """Left-aligned columns, two spaces apart, a header line first."""
    cells = [[fmt(row.get(key)) for _, key, fmt in columns] for row in rows]
    headers = [header for header, _, _ in columns]
    widths = [
        max([len(h), *(len(line[i]) for line in cells)]) for i, h in enumerate(headers)
    ]
    lines = [headers, *cells]
    return "".join(
        "  ".join(
            cell.ljust(width) for cell, width in zip(line, widths, strict=True)
        ).rstrip()
        + "\n"
        for line in lines
    )


def as_json(value: t.Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def pairs(
    row: dict[str, t.Any], fields: list[tuple[str, str, t.Callable[[t.Any], str]]]
) -> str:
    """One record as ``label: value`` lines (``clients show``)."""
    width = max(len(label) for label, _, _ in fields)
    return "".join(
        f"{label + ':':<{width + 1}} {fmt(row.get(key))}\n"
        for label, key, fmt in fields
    )
