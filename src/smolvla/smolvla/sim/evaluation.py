"""Scoring of simulated pick-and-place runs for the sync / async / continuous comparison (the paper's Figure 5).

One run: a seeded scene, the arm starts at home, cubes respawn after every placement, and the run lasts a fixed
time. Its placement times give the three figures of the paper: success (first cube placed within a time limit),
task completion time (time to the first placement) and cubes placed within the first 60 seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

CUBES_WINDOW = 60.0


@dataclass(frozen=True)
class RunResult:
    """Placement times (seconds since the run's start, increasing) of one seeded run lasting `duration` s."""

    mode: str
    seed: int
    duration: float
    placement_times: tuple[float, ...]

    def __post_init__(self) -> None:
        times = list(self.placement_times)
        if any(b < a for a, b in zip(times, times[1:], strict=False)) or any(t < 0 for t in times):
            raise ValueError(f"placement times must be non-negative and increasing, got {times}")


@dataclass(frozen=True)
class ModeSummary:
    """Aggregate over the runs of one mode. completion_time is NaN when no run succeeded."""

    mode: str
    runs: int
    success_rate: float
    completion_time: float
    cubes_in_60s: float


def summarize(results: Sequence[RunResult], success_limit: float) -> list[ModeSummary]:
    """Per mode, in order of first appearance: fraction of runs whose first cube was placed within success_limit
    seconds, mean time to that first placement over the successful runs, and mean cubes placed within 60 s
    (counted over min(duration, 60) s of each run)."""
    modes: dict[str, list[RunResult]] = {}
    for result in results:
        modes.setdefault(result.mode, []).append(result)
    summaries = []
    for mode, runs in modes.items():
        firsts = [r.placement_times[0] for r in runs if r.placement_times and r.placement_times[0] <= success_limit]
        window = [sum(1 for t in r.placement_times if t <= min(r.duration, CUBES_WINDOW)) for r in runs]
        summaries.append(
            ModeSummary(
                mode=mode,
                runs=len(runs),
                success_rate=len(firsts) / len(runs),
                completion_time=sum(firsts) / len(firsts) if firsts else math.nan,
                cubes_in_60s=sum(window) / len(runs),
            )
        )
    return summaries
