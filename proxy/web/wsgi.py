"""The WSGI entry point, `proxy.web.wsgi:app` (the Procfile's and the container's).

Importing this module builds the app: only gunicorn's workers import it (a
checkout's top-level wsgi.py re-exports it). It loads the working directory's
`.env`; the environment wins over it.

gunicorn's master has already checked the settings (`on_starting`); should a
worker still fail to load them, it exits with gunicorn's WORKER_BOOT_ERROR (3),
on which the master halts. Any other exit status makes it restart the worker,
forever, with the port bound and requests hanging.
"""

from __future__ import annotations

import sys

from dotenv import find_dotenv
from dotenv import load_dotenv

from proxy import create_app
from proxy.config.env import ConfigError

#: gunicorn.arbiter.Arbiter.WORKER_BOOT_ERROR: the master halts instead of restarting.
WORKER_BOOT_ERROR = 3

# usecwd: installed, python-dotenv would search upwards from site-packages.
load_dotenv(find_dotenv(usecwd=True))
try:
    app = create_app()
except ConfigError as exc:
    # One line that names the variable and the fix, not a traceback.
    sys.stderr.write(f"configuration error: {exc}\n")
    raise SystemExit(WORKER_BOOT_ERROR) from None
# /readyz: fetch the IdP's discovery document now, in the background.
app.extensions["proxy"].upstream_readiness.start()
