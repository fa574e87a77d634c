"""`python -m proxy.cli.settings_check`: do the settings load? 0, else one line, 2.

Run by gunicorn's master (config/gunicorn.conf.py, `on_starting`) before it
binds the port or forks a worker. The master cannot load the settings itself:
that would import the proxy package, and with it requests, urllib3 and redis,
before gevent patches the workers (proxy/web/worker.py refuses that). A worker
that fails to load them can only exit, and gunicorn restarts it forever; so
the master asks this child first and refuses to start on its answer. Nothing
is reached over the network (that is `python -m proxy check`).
"""

from __future__ import annotations

import os
import sys
import typing as t
from collections.abc import Mapping

from proxy.clients import catalog
from proxy.config.env import ConfigError
from proxy.config.settings import Settings

#: The exit status for settings that do not load (as `python -m proxy check`).
CONFIG_ERROR_EXIT = 2


def main(environ: Mapping[str, str], err: t.TextIO) -> int:
    """0 when the settings and client catalog load; else one line on ``err``, 2."""
    try:
        catalog.load(Settings.from_env(environ))
    except ConfigError as exc:
        err.write(f"configuration error: {exc}\n")
        return CONFIG_ERROR_EXIT
    return 0


if __name__ == "__main__":
    from dotenv import find_dotenv
    from dotenv import load_dotenv

    # As proxy/web/wsgi.py does; the environment wins over .env.
    load_dotenv(find_dotenv(usecwd=True))
    sys.exit(main(os.environ, sys.stderr))
