"""The platform files agree with the project: requirements.txt with pyproject's
ranges, and app.json, render.yaml and fly.toml with the Procfile, the image and
the settings the proxy needs behind a router.

The platforms' own validators are not reachable from here; these checks parse
each file and hold it to the fields its platform's reference documents.
"""

from __future__ import annotations

import json
import shlex
import tomllib
import typing as t

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from tests.deploy.conftest import ROOT


def project() -> dict[str, t.Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return t.cast(dict[str, t.Any], tomllib.load(file)["project"])


def requirement_lines() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and line[0] != "#"]


def pins() -> dict[str, str]:
    """name -> pinned version, for every `name==version` line."""
    found = {}
    for line in requirement_lines():
        if line == ".":
            continue
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"not pinned exactly: {line}"
        found[canonicalize_name(requirement.name)] = spec.version
    return found


def procfile_web() -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.removeprefix("web:").strip()
    raise AssertionError("Procfile has no web: line")


# --------------------------------------------------------------------------- #
# requirements.txt
# --------------------------------------------------------------------------- #


def test_requirements_install_the_project_itself_last() -> None:
    """The buildpack's `pip install -r requirements.txt` installs the package
    (non-editable) with its pinned dependencies."""
    assert requirement_lines()[-1] == "."
    assert requirement_lines().count(".") == 1


@pytest.mark.parametrize("dependency", project()["dependencies"])
def test_each_runtime_dependency_is_pinned_within_its_range(dependency: str) -> None:
    requirement = Requirement(dependency)
    pinned = pins()
    name = canonicalize_name(requirement.name)
    assert name in pinned, f"{name} is not pinned in requirements.txt"
    assert requirement.specifier.contains(pinned[name], prereleases=True), (
        f"{name}=={pinned[name]} is outside pyproject's {requirement.specifier}"
    )


def test_extras_of_runtime_dependencies_are_pinned_too() -> None:
    """redis[hiredis], fakeredis[lua], gunicorn[gevent]: what those extras add
    is part of the runtime."""
    pinned = pins()
    for expected in ("hiredis", "lupa", "packaging", "gevent"):
        assert expected in pinned, expected


def test_requirements_pin_no_development_tool() -> None:
    extras = project()["optional-dependencies"]
    runtime = {
        canonicalize_name(Requirement(d).name) for d in project()["dependencies"]
    }
    dev_only = {
        canonicalize_name(Requirement(d).name) for d in extras["dev"] + extras["bench"]
    } - runtime
    assert set(pins()) & dev_only == set()


# --------------------------------------------------------------------------- #
# Heroku: app.json, .python-version, .profile
# --------------------------------------------------------------------------- #


def test_app_json_provisions_redis_and_the_settings_behind_a_router() -> None:
    app = json.loads((ROOT / "app.json").read_text())
    assert {"url": "heroku/python"} in app["buildpacks"]
    plans = [a["plan"] if isinstance(a, dict) else a for a in app["addons"]]
    assert any(plan.startswith("heroku-redis") for plan in plans)
    env = app["env"]
    assert env["PUBLIC_URL"]["required"] is True
    assert "value" not in env["PUBLIC_URL"]  # only the deployer knows it
    # Heroku's generator makes 64 hex digits: what PROXY_SECRET_KEY must be.
    assert env["PROXY_SECRET_KEY"]["generator"] == "secret"
    assert env["FORWARDED_ALLOW_IPS"]["value"] == "*"
    allowed = {"description", "value", "required", "generator"}
    assert all(set(spec) <= allowed for spec in env.values())


def test_python_version_is_one_the_project_supports() -> None:
    version = (ROOT / ".python-version").read_text().strip()
    assert version == "3.11"  # the version CI and the image use
    assert SpecifierSet(project()["requires-python"]).contains(version)


# --------------------------------------------------------------------------- #
# Render: render.yaml
# --------------------------------------------------------------------------- #


def render_services() -> dict[str, dict[str, t.Any]]:
    blueprint = yaml.safe_load((ROOT / "render.yaml").read_text())
    return {service["type"]: service for service in blueprint["services"]}


def test_render_web_service_starts_like_the_procfile() -> None:
    web = render_services()["web"]
    assert web["runtime"] == "python"
    assert web["buildCommand"] == "pip install -r requirements.txt"
    assert shlex.split(web["startCommand"]) == shlex.split(procfile_web())
    assert web["healthCheckPath"] == "/healthz"


def test_render_env_asks_for_secrets_and_wires_key_value() -> None:
    services = render_services()
    env = {item["key"]: item for item in services["web"]["envVars"]}
    # Render's generateValue is base64; the proxy wants hex: asked, not generated.
    assert env["PROXY_SECRET_KEY"] == {"key": "PROXY_SECRET_KEY", "sync": False}
    assert env["PUBLIC_URL"]["sync"] is False
    assert env["FORWARDED_ALLOW_IPS"]["value"] == "*"
    source = env["REDIS_URL"]["fromService"]
    store = services["keyvalue"]
    assert source == {
        "type": "keyvalue",
        "name": store["name"],
        "property": "connectionString",
    }
    assert store["maxmemoryPolicy"] == "noeviction"
    assert store["ipAllowList"] == []
    assert store["plan"] != "free"  # the free plan does not persist


# --------------------------------------------------------------------------- #
# Fly.io: fly.toml
# --------------------------------------------------------------------------- #


def test_fly_builds_the_image_and_checks_healthz_on_its_port() -> None:
    with (ROOT / "fly.toml").open("rb") as file:
        fly = tomllib.load(file)
    assert fly["build"]["dockerfile"] == "Dockerfile"
    assert fly["build"]["args"]["EXTRAS"] == ""  # no demo services in production
    service = fly["http_service"]
    assert service["internal_port"] == int(fly["env"]["PORT"]) == 8000
    assert service["force_https"] is True
    (check,) = service["checks"]
    assert check["path"] == "/healthz"
    assert fly["env"]["FORWARDED_ALLOW_IPS"] == "*"
