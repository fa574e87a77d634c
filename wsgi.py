"""The WSGI entry point: `gunicorn -c config/gunicorn.conf.py wsgi:app`."""

from __future__ import annotations

import sys

from dotenv import load_dotenv

from proxy import create_app
from proxy.config.settings import ConfigError

load_dotenv()
try:
    app = create_app()
except ConfigError as exc:
    # One line that names the variable and the fix, not a traceback.
    sys.stderr.write(f"configuration error: {exc}\n")
    raise SystemExit(2) from None
