"""Launch arguments as typed values, with errors that name the argument (`control_rate:=abc` says so)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

TRUE = ("true", "1", "yes", "on")
FALSE = ("false", "0", "no", "off")


class LaunchArgumentError(ValueError):
    """A launch argument that cannot be used; the message names it and the accepted values."""


def flag(name: str, text: str) -> bool:
    """A boolean argument: true/false (also 1/0, yes/no, on/off, any case)."""
    value = text.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise LaunchArgumentError(f"launch argument {name}:={text} must be true or false")


def choice(name: str, text: str, choices: Sequence[str]) -> str:
    """One of `choices`."""
    value = text.strip()
    if value not in choices:
        raise LaunchArgumentError(f"launch argument {name}:={text} must be one of {', '.join(choices)}")
    return value


def optional_value(name: str, text: str, convert: Callable[[str], T]) -> T | None:
    """None for an empty argument (keep the parameter file's value), else convert(text) (int, float, ...)."""
    value = text.strip()
    if not value:
        return None
    try:
        return convert(value)
    except ValueError:
        kind = {int: "an integer", float: "a number"}.get(convert, f"a valid {getattr(convert, '__name__', 'value')}")
        raise LaunchArgumentError(f"launch argument {name}:={text} is not {kind}") from None
