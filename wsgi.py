"""A checkout's WSGI entry point: `gunicorn -c config/gunicorn.conf.py wsgi:app`.

The app is built by proxy/web/wsgi.py, which ships with the package (the
Procfile and the container serve `proxy.web.wsgi:app`); this name stays for
the commands, tests and benchmark that run from the repository root.
"""

from __future__ import annotations

from proxy.web.wsgi import app

__all__ = ["app"]
