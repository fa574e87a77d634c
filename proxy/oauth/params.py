"""Request parameters (OAuth 2.1 §3.1, §3.2): each at most once.

"Request and response parameters defined by this specification MUST NOT be
included more than once", so a repeated parameter is an error, not a choice."""

from __future__ import annotations

import typing as t

from proxy.oauth.errors import InvalidRequestError

if t.TYPE_CHECKING:
    from werkzeug.datastructures import MultiDict


def single(params: MultiDict[str, str], name: str) -> str | None:
    """One value; repeated is invalid_request, empty is absent (GEN-6, GEN-7)."""
    values = params.getlist(name)
    if len(values) > 1:
        raise InvalidRequestError(f"'{name}' must not be repeated.")
    if not values or values[0] == "":
        return None
    return values[0]
