"""The upstream IdP for the benchmark: oidc-provider-mock as a WSGI app.

Served by gunicorn with ONE worker and many threads: the mock keeps its users,
codes and tokens in-process, so a second worker would not know the first's codes.
"""

from __future__ import annotations

import logging
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from oidc_provider_mock import app as _make_app

# The mock logs every code it issues at INFO; that is not what we measure.
logging.getLogger("oidc_provider_mock").setLevel(logging.WARNING)

app = _make_app()
