"""Aggregation of a new chunk with the queued actions it overlaps (the paper's f(A_old, A_new)).

Every function takes two arrays of the same shape (m, n_joints): old[i] and new[i] are the queued and the new action
for the same tick, i = 0 being the next tick to execute. It returns the actions to keep for those m ticks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def weighted_average(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """0.3 old + 0.7 new (the reference implementation's default)."""
    return 0.3 * old + 0.7 * new


def latest_only(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """The new chunk replaces the queued actions."""
    return new.copy()


def average(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """0.5 old + 0.5 new."""
    return 0.5 * old + 0.5 * new


def conservative(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """0.7 old + 0.3 new: favours the plan already being executed."""
    return 0.7 * old + 0.3 * new


def ramp(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Temporal ramp: the weight of the new chunk rises linearly across the overlap, (i + 1) / (m + 1) at tick i.

    The next tick to execute stays close to the queued plan (no jump at the switch), the last overlapping tick is
    mostly the new chunk, and the ticks after the overlap are the new chunk alone.
    """
    m = old.shape[0]
    weight = (np.arange(1, m + 1, dtype=np.float64) / (m + 1))[:, None]
    return (1.0 - weight) * old + weight * new


#: Aggregation functions by name (the executor's `aggregation` parameter).
AGGREGATIONS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "weighted_average": weighted_average,
    "latest_only": latest_only,
    "average": average,
    "conservative": conservative,
    "ramp": ramp,
}


def aggregate(name: str, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Combine overlapping actions with the named function; raises KeyError for an unknown name."""
    if old.shape != new.shape:
        raise ValueError(f"overlapping actions must have one shape, got {old.shape} and {new.shape}")
    return AGGREGATIONS[name](old, new)
