"""Checks for node parameters: every value a user can set is validated, at start and at every later change.

A node lists, per parameter, a check (a function returning the problem as a sentence, or None when the value is
fine) and whether the value may change while the node runs. The ROS adapter (smolvla_ros.parameters) declares the
parameters read-only unless live, refuses a start with any invalid value (naming each), and refuses an invalid
change with the reason before it is stored. Plain Python.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

#: A parameter check: the problem with `value`, or None when it is valid.
Check = Callable[[object], str | None]


def number(low: float | None = None, high: float | None = None, *, above: float | None = None) -> Check:
    """A finite number (int or float) in [low, high]; `above` instead of low for an open lower bound."""

    def check(value: object) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"must be a finite number, got {value!r}"
        if above is not None and not value > above:
            return f"must be greater than {above:g}, got {value:g}"
        if low is not None and value < low:
            return f"must be at least {low:g}, got {value:g}"
        if high is not None and value > high:
            return f"must be at most {high:g}, got {value:g}"
        return None

    return check


def within(low: float, high: float) -> Check:
    """A finite number (int or float) in the closed interval [low, high], refused as one range."""

    def check(value: object) -> str | None:
        finite = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
        if finite and low <= value <= high:
            return None
        return f"must be within [{low:g}, {high:g}], got {value!r}"

    return check


def integer(low: int, high: int) -> Check:
    """An integer in [low, high]."""

    def check(value: object) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, got {value!r}"
        if not low <= value <= high:
            return f"must be between {low} and {high}, got {value}"
        return None

    return check


def one_of(*choices: str) -> Check:
    """One of the given strings."""

    def check(value: object) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}, got {value!r}"

    return check


def names(min_count: int, max_count: int) -> Check:
    """A list of min_count to max_count distinct, non-empty strings."""

    def check(value: object) -> str | None:
        if not isinstance(value, Sequence) or isinstance(value, str) or not all(isinstance(v, str) for v in value):
            return f"must be a list of strings, got {value!r}"
        if not min_count <= len(value) <= max_count:
            return f"must list {min_count} to {max_count} names, got {len(value)}"
        if any(not v.strip() for v in value) or len(set(value)) != len(value):
            return f"names must be non-empty and distinct, got {list(value)}"
        return None

    return check


def text(check_text: Callable[[str], str | None]) -> Check:
    """A string accepted by check_text (which returns the problem or None)."""

    def check(value: object) -> str | None:
        return f"must be a string, got {value!r}" if not isinstance(value, str) else check_text(value)

    return check


def problems(checks: Mapping[str, Check], values: Mapping[str, object]) -> list[str]:
    """'name: problem' for each value its check refuses (names without a check are not looked at)."""
    found = []
    for name, value in values.items():
        check = checks.get(name)
        problem = None if check is None else check(value)
        if problem is not None:
            found.append(f"{name} {problem}")
    return found
