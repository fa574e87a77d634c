"""gunicorn settings from a checkout: `gunicorn -c config/gunicorn.conf.py wsgi:app`.

The settings live in the package, proxy/config/gunicorn_conf.py, so that an
installed proxy carries them (mcp_oauth_proxy_gunicorn.py loads them there).
This file runs that one by path, in its own namespace: gunicorn reads the same
names, and nothing of the ``proxy`` package is imported into the arbiter (see
that file's docstring for why that matters).
"""

from __future__ import annotations

from pathlib import Path

__file__ = str(Path(__file__).resolve().parent.parent / "proxy/config/gunicorn_conf.py")
# The settings run as if they were this file: same globals, their own __file__.
exec(compile(Path(__file__).read_text(encoding="utf-8"), __file__, "exec"))  # noqa: S102
