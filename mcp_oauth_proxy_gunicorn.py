"""`gunicorn -c python:mcp_oauth_proxy_gunicorn proxy.web.wsgi:app`: the installed
proxy's gunicorn settings, from any working directory.

The settings ship inside the package (proxy/config/gunicorn_conf.py), but
gunicorn's ``python:`` form imports the module it names, and importing
anything under ``proxy`` runs proxy/__init__.py: flask, redis, requests and
urllib3 would be imported into the arbiter before gevent patches the workers,
whose worker class then refuses to start (proxy/web/worker.py). This module
lives outside the package for that reason alone: it finds the package's
directory without importing it (``find_spec`` of a top-level name imports
nothing) and runs the settings file there by path, in this namespace.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _settings_file() -> Path:
    """proxy/config/gunicorn_conf.py of the `proxy` package that workers will import."""
    spec = importlib.util.find_spec("proxy")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "error: the proxy package is not importable; install it "
            "(pip install mcp-oauth-proxy) in the Python that runs gunicorn"
        )
    package = Path(next(iter(spec.submodule_search_locations)))
    return package / "config" / "gunicorn_conf.py"


__file__ = str(_settings_file())
# The settings run as if they were this module: same globals, their own __file__.
exec(compile(Path(__file__).read_text(encoding="utf-8"), __file__, "exec"))  # noqa: S102
