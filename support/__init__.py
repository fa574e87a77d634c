"""Development helpers shared by the tests and the benchmark; never shipped.

pyproject.toml packages only `proxy*`. This package is importable because the
tests (`python -m pytest`) and the benchmark (`python -m bench`) both run from
the repository root, which is then on sys.path, as it is for `tests` and
`bench` themselves.
"""
