"""Time resampling of a chunk to the executor's control period, for a policy trained at another frame rate."""

from __future__ import annotations

import math

import numpy as np


def resample_chunk(actions: np.ndarray, chunk_period: float, control_period: float) -> np.ndarray:
    """The chunk's motion at the control period: row j is the action for control tick first_tick + j.

    Action i of the chunk is the target (i + 1) * chunk_period after the observation; row j of the result is the
    target (j + 1) * control_period after it, linearly interpolated per joint between the two nearest actions (the
    first action before it, as the observed state is not part of the chunk). The result covers the chunk's duration:
    floor(m * chunk_period / control_period) rows, at least one. The chunk's speed in rad/s is kept.
    """
    actions = np.asarray(actions, dtype=np.float64)
    if actions.ndim != 2 or actions.shape[0] == 0:
        raise ValueError(f"actions must have shape (m >= 1, joints), got {actions.shape}")
    for label, period in (("chunk period", chunk_period), ("control period", control_period)):
        if not (math.isfinite(period) and period > 0):
            raise ValueError(f"{label} must be > 0 seconds, got {period!r}")
    m = actions.shape[0]
    rows = max(1, math.floor(m * chunk_period / control_period + 1e-9))
    source = (np.arange(m) + 1) * chunk_period
    target = (np.arange(rows) + 1) * control_period
    return np.stack([np.interp(target, source, actions[:, j]) for j in range(actions.shape[1])], axis=1)
