"""Property-based fuzzing of every endpoint (issue 12), on a real redis-server.

Each module mutates real requests (from ``world.py``) and sends them through
``properties.Fuzzer``, which holds every answer to the properties listed in
``properties.py``. Run ``python -m pytest tests/fuzz`` (120 examples a test,
derandomized when CI is set); ``FUZZ_EXAMPLES=2000`` runs each test longer,
and ``--hypothesis-show-statistics`` shows which answers a run reached.
"""
