import math

import pytest

from smolvla.parameters import integer, names, number, one_of, problems, text


@pytest.mark.parametrize(
    "check, value, problem",
    [
        (number(above=0.0, high=1000.0), 1e-300, None),
        (number(above=0.0, high=1000.0), 0.0, "must be greater than 0, got 0"),
        (number(above=0.0, high=1000.0), -5.0, "must be greater than 0, got -5"),
        (number(above=0.0, high=1000.0), 1e300, "must be at most 1000, got 1e+300"),
        (number(0.0, 1.0), math.nan, "must be a finite number, got nan"),
        (number(0.0, 1.0), math.inf, "must be a finite number, got inf"),
        (number(0.0, 1.0), True, "must be a finite number, got True"),
        (number(0.0, 1.0), "0.5", "must be a finite number, got '0.5'"),
        (number(0.0, 1.0), 1, None),
        (integer(0, 2**32 - 1), -1, "must be between 0 and 4294967295, got -1"),
        (integer(0, 2**32 - 1), 2.0, "must be an integer, got 2.0"),
        (integer(0, 2**32 - 1), 7, None),
        (one_of("cpu", "cuda"), "tpu", "must be one of cpu, cuda, got 'tpu'"),
        (names(1, 3), ["/a", "/a"], "names must be non-empty and distinct, got ['/a', '/a']"),
        (names(1, 3), [], "must list 1 to 3 names, got 0"),
        (names(1, 3), "/a", "must be a list of strings, got '/a'"),
        (text(lambda s: None if s else "is empty"), "", "is empty"),
        (text(lambda s: None), 3, "must be a string, got 3"),
    ],
)
def test_checks_name_the_problem(check, value, problem):
    assert check(value) == problem


def test_problems_lists_every_refused_value_by_name():
    checks = {"rate": number(above=0.0), "seed": integer(0, 10)}
    assert problems(checks, {"rate": -1.0, "seed": 3, "topic": "/x"}) == ["rate must be greater than 0, got -1"]
    assert problems(checks, {"rate": 1.0, "seed": 11}) == ["seed must be between 0 and 10, got 11"]
