"""proxy/cli/operands.py: an id that starts with "-" is read as the id it is."""

from __future__ import annotations

from proxy.cli import admin
from proxy.cli import keys
from proxy.cli.operands import dash_operands

GRANT = "-AbCdEfGhIjKlMnOpQrStUv"


def test_an_unknown_dash_word_is_moved_behind_a_double_dash() -> None:
    parser = admin.parser()
    argv = ["grants", "revoke", GRANT, "--yes"]
    assert dash_operands(argv, parser) == ["grants", "revoke", "--yes", "--", GRANT]
    args = parser.parse_args(dash_operands(argv, parser))
    assert args.grant_id == GRANT
    assert args.yes is True


def test_options_negative_numbers_and_an_explicit_double_dash_are_left_alone() -> None:
    parser = keys._parser()
    assert dash_operands(["rotate", "--overlap", "-5"], parser) == [
        "rotate",
        "--overlap",
        "-5",
    ]
    assert dash_operands(["retire", "--", GRANT], parser) == ["retire", "--", GRANT]
    assert dash_operands(["list", "-h"], parser) == ["list", "-h"]
    assert dash_operands(["retire", "--help"], parser) == ["retire", "--help"]
