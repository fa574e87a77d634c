"""The WSGI entry point: `gunicorn -c config/gunicorn.conf.py wsgi:app`.

gunicorn's master has already checked the settings (`on_starting`); should a
worker still fail to load them, it exits with gunicorn's WORKER_BOOT_ERROR (3),
on which the master halts. Any other exit status makes it restart the worker,
forever, with the port bound and requests hanging.
"""

from __future__ import annotations

import sys

from dotenv import load_dotenv

from proxy import create_app
from proxy.config.settings import ConfigError

#: gunicorn.arbiter.Arbiter.WORKER_BOOT_ERROR: the master halts instead of restarting.
WORKER_BOOT_ERROR = 3

load_dotenv()
try:
    app = create_app()
except ConfigError as exc:
    # One line that names the variable and the fix, not a traceback.
    sys.stderr.write(f"configuration error: {exc}\n")
    raise SystemExit(WORKER_BOOT_ERROR) from None
# /readyz: fetch the IdP's discovery document now, in the background.
app.extensions["proxy"].upstream_readiness.start()
