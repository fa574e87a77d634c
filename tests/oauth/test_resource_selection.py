"""proxy/oauth/authorization_request.py: select_resource (decision J56)."""

from __future__ import annotations

import pytest

from proxy.oauth.authorization_request import ResourceOffer
from proxy.oauth.authorization_request import select_resource
from proxy.oauth.errors import InvalidTargetError
from proxy.oauth.errors import OAuthError

GITHUB = ResourceOffer("https://proxy.example.com/github/mcp", ("github",))
CRM = ResourceOffer("https://proxy.example.com/crm/mcp", ("crm",))


def fail(error: type[OAuthError], description: str, reason: str) -> OAuthError:
    return error(description, reason=reason)


@pytest.mark.parametrize(
    ("values", "offers", "chosen"),
    [
        ([], [GITHUB], GITHUB),  # one server: the resource may be left out
        ([""], [GITHUB], GITHUB),
        ([CRM.resource], [GITHUB, CRM], CRM),
        (["https://PROXY.example.com:443/crm/mcp/"], [GITHUB, CRM], CRM),
        ([CRM.resource + "?tenant=1"], [GITHUB, CRM], CRM),  # ChatGPT's query
        ([GITHUB.resource, GITHUB.resource + "/"], [GITHUB, CRM], GITHUB),
    ],
)
def test_the_named_or_only_server_is_chosen(
    values: list[str], offers: list[ResourceOffer], chosen: ResourceOffer
) -> None:
    assert select_resource(values, offers, fail) is chosen


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ([], "res_missing"),
        (["https://proxy.example.com/mcp"], "res_unknown"),
        (["https://proxy.example.com/github"], "res_unknown"),
        (["github/mcp"], "res_form"),
        ([GITHUB.resource, CRM.resource], "res_several"),
    ],
)
def test_anything_else_is_invalid_target(values: list[str], reason: str) -> None:
    with pytest.raises(InvalidTargetError) as exc:
        select_resource(values, [GITHUB, CRM], fail)
    assert exc.value.reason == reason
