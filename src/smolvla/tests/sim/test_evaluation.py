"""Scoring of simulated runs."""

import math

import pytest

from smolvla.sim.evaluation import RunResult, summarize


def test_summary_per_mode():
    results = [
        RunResult("sync", 0, 60.0, (12.0, 30.0, 59.0)),
        RunResult("sync", 1, 60.0, (25.0,)),  # first cube too late for the 20 s limit, but still counted in 60 s
        RunResult("async", 0, 70.0, (8.0, 16.0, 24.0, 65.0)),  # the cube at 65 s is outside the 60 s window
    ]
    sync, asynchronous = summarize(results, success_limit=20.0)
    assert (sync.mode, sync.runs, sync.success_rate, sync.completion_time, sync.cubes_in_60s) == (
        "sync",
        2,
        0.5,
        12.0,
        2.0,
    )
    assert asynchronous.success_rate == 1.0 and asynchronous.cubes_in_60s == 3.0


def test_no_success_gives_nan_completion_time():
    (summary,) = summarize([RunResult("continuous", 3, 60.0, ())], success_limit=30.0)
    assert summary.success_rate == 0.0 and math.isnan(summary.completion_time) and summary.cubes_in_60s == 0.0


def test_unordered_placements_are_refused():
    with pytest.raises(ValueError):
        RunResult("sync", 0, 60.0, (5.0, 3.0))
