"""The OAuth rules themselves: pure functions and value types, no Flask, no Redis.

Each module is named after the spec concept it implements and cites its RFC
section; callers pass plain values (and `now` where time matters), so every
rule is testable alone. `tests/test_layers.py` enforces the isolation.
"""
