"""Ids that start with "-" on a command line.

Key, grant and client ids are base64url, so one in 64 starts with "-", and
argparse takes such a word for an option (``admin grants revoke -AbC…``
fails with "unrecognized arguments"). :func:`dash_operands` moves each word
that starts with "-" but is no option the parser knows behind a ``--``,
where argparse reads it as the operand it is.
"""

from __future__ import annotations

import argparse


def dash_operands(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """``argv`` with unknown dash words after ``--`` (unchanged if it has one)."""
    if "--" in argv:
        return argv
    known = _option_strings(parser)
    operands = [
        word
        for word in argv
        if word.startswith("-")
        and word.split("=")[0] not in known
        and not _number(word)  # an option's negative value, as argparse reads it
    ]
    if not operands:
        return argv
    return [w for w in argv if w not in operands] + ["--", *operands]


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of the parser and of its subcommands' parsers."""
    found: set[str] = set()
    for action in parser._actions:  # noqa: SLF001 - argparse has no public walk
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for sub in action.choices.values():
                found |= _option_strings(sub)
    return found


def _number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True
