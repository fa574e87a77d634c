"""The wheel carries every file the proxy reads at run time, not only its modules.

setuptools ships `.py` files by itself; anything else (templates, the client
catalog) must be named in pyproject's package-data, or an installed proxy
fails at the first consent page. Every non-Python file under proxy/ counts as
a runtime file: none is there for another reason.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from tests.deploy.conftest import ROOT


def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def runtime_files() -> list[str]:
    """Every file under proxy/ that is not Python source or bytecode."""
    return sorted(
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "proxy").rglob("*")
        if path.is_file()
        and path.suffix not in (".py", ".pyc")
        and "__pycache__" not in path.parts
    )


def test_every_non_python_file_of_the_package_is_in_the_wheel(wheel: Path) -> None:
    names = wheel_names(wheel)
    files = runtime_files()
    assert "proxy/clients/catalog.json" in files  # the scan sees them at all
    assert [name for name in files if name not in names] == []


def test_the_wheel_has_the_templates_the_gunicorn_settings_and_the_app(
    wheel: Path,
) -> None:
    names = wheel_names(wheel)
    templates = {n for n in names if n.startswith("proxy/web/templates/")}
    assert {
        "proxy/web/templates/_base.html",
        "proxy/web/templates/consent.html",
        "proxy/web/templates/error.html",
    } <= templates
    assert {
        "mcp_oauth_proxy_gunicorn.py",  # gunicorn -c python:mcp_oauth_proxy_gunicorn
        "proxy/config/gunicorn_conf.py",
        "proxy/web/worker.py",  # loaded by path from the settings
        "proxy/observability/logging_setup.py",  # likewise
        "proxy/web/wsgi.py",
    } <= names


def test_the_wheel_holds_no_tests_or_repository_files(wheel: Path) -> None:
    tops = {name.split("/", 1)[0] for name in wheel_names(wheel)}
    dist_info = {t for t in tops if t.endswith(".dist-info")}
    assert tops - dist_info == {"proxy", "mcp_oauth_proxy_gunicorn.py"}
