"""How smooth a commanded trajectory is at chunk seams: the figures that compare aggregations (make eval-rtc).

Inputs are what the executor publishes: its tick log (every tick's command, stamped with the tick's time) and its
status (published after every tick with cumulative counters: chunks received, seams and their jumps). Both stamps
come from the executor's clock, so they can be matched without trusting arrival times.

- Seam ticks. A chunk is merged between two control ticks, and the status after a tick shows the chunks merged
  before it. So the first tick that commands from a new chunk is the first tick after the last status that did
  not count it yet.
- Seam jumps. The executor measures each chunk's seam (smolvla.async_inference.rtc.SeamMeter: how far it moved the
  command of the next tick, before the command limits); the cumulative count and mean in the status give the mean
  over any window exactly, and each seam's own jump where statuses see one seam at a time.
- RMS jerk. The third difference of consecutive commands divided by dt^3, with dt the control period (not the tick
  stamps: a lock-step simulated arm advances one control period per command, so the jitter of a loaded machine's
  timer is not part of the motion), pooled over the chosen joints and samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StatusPoint:
    """What seam measurement needs from one executor status (stamp in seconds on the executor's clock)."""

    stamp: float
    chunks_received: int
    seams: int
    seam_jump_last: float
    seam_jump_mean: float


@dataclass(frozen=True)
class SeamJumps:
    """Seam jumps within a window: how many, their mean and maximum (0 without seams), and each one seen alone."""

    count: int
    mean: float
    max: float
    jumps: tuple[float, ...]


def seam_ticks(tick_stamps: Sequence[float], statuses: Sequence[StatusPoint]) -> list[int]:
    """Indices into the tick log (stamps increasing) of the first command from each chunk the statuses count.

    A status whose chunks_received exceeds the previous one's marks a chunk merged after that previous status; its
    first command is the first tick stamped after the previous status. Chunks counted before the first status and
    chunks merged after the last tick have no index.
    """
    stamps = np.asarray(tick_stamps, dtype=float)
    if stamps.size > 1 and np.any(np.diff(stamps) < 0):
        raise ValueError("tick stamps must be increasing")
    indices = []
    for previous, status in zip(statuses, statuses[1:], strict=False):
        if status.chunks_received > previous.chunks_received:
            index = int(np.searchsorted(stamps, previous.stamp, side="right"))
            if index < stamps.size and (not indices or indices[-1] != index):
                indices.append(index)
    return indices


def seam_jumps(statuses: Sequence[StatusPoint]) -> SeamJumps:
    """The seams counted between the first and the last status (cumulative counters; a counter that goes down is
    a restarted executor, counted from zero again). The mean is exact; a status that counts several new seams at
    once contributes only its last one to `jumps` and `max`."""
    count, total, jumps = 0, 0.0, []
    for previous, status in zip(statuses, statuses[1:], strict=False):
        before_count, before_sum = previous.seams, previous.seams * previous.seam_jump_mean
        if status.seams < previous.seams:
            before_count, before_sum = 0, 0.0
        new = status.seams - before_count
        if new <= 0:
            continue
        count += new
        total += status.seams * status.seam_jump_mean - before_sum
        jumps.append(status.seam_jump_last)
    return SeamJumps(count, total / count if count else 0.0, max(jumps, default=0.0), tuple(jumps))


def jerk(positions: np.ndarray, period: float) -> np.ndarray:
    """Third differences of consecutive commands (T, n_joints) / period^3: (T - 3, n_joints), empty when T < 4."""
    positions = np.asarray(positions, dtype=float)
    if positions.ndim != 2:
        raise ValueError(f"positions must be (ticks, joints), got shape {positions.shape}")
    if not period > 0:
        raise ValueError(f"period must be > 0, got {period}")
    if positions.shape[0] < 4:
        return np.zeros((0, positions.shape[1]))
    return np.diff(positions, n=3, axis=0) / period**3


def rms_jerk(segments: Sequence[np.ndarray], period: float, joints: Sequence[int] | None = None) -> float:
    """Root mean square of the jerk over the joints (column indices; None: all) and samples of the contiguous
    command segments (e.g. one per episode; no difference spans two segments); NaN when no segment has 4 commands."""
    columns = slice(None) if joints is None else list(joints)
    samples = [jerk(segment, period)[:, columns].ravel() for segment in segments]
    pooled = np.concatenate(samples) if samples else np.zeros(0)
    return float(np.sqrt(np.mean(pooled**2))) if pooled.size else math.nan


def seam_windows(positions: np.ndarray, seams: Sequence[int], before: int, after: int) -> list[np.ndarray]:
    """The commands from `before` ticks before each seam tick to `after` ticks after it ((before + after + 1,
    n_joints) each), relative to the command just before the seam; seams too close to an end are left out."""
    positions = np.asarray(positions, dtype=float)
    windows = []
    for seam in seams:
        if seam - before >= 0 and seam + after < len(positions) and seam >= 1:
            windows.append(positions[seam - before : seam + after + 1] - positions[seam - 1])
    return windows
