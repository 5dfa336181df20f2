"""Similarity filter: skip a chunk request when the arm has hardly moved since the last observation processed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class SimilarityFilter:
    """Distance in a normalised joint space: joint j is divided by scale[j] (e.g. its range in radians).

    The distance is the Euclidean norm of the scaled difference, so epsilon is in "fractions of the joint range"
    whatever the unit of each joint (the reference compared raw radians with 1.0 and filtered almost everything).
    The filter only answers whether a state is similar; the queue decides, and never asks it about a must-go request.
    Not thread-safe: AsyncActionQueue calls it under its lock.
    """

    def __init__(self, scales: Sequence[float] | np.ndarray, epsilon: float) -> None:
        scales = np.asarray(scales, dtype=np.float64)
        if scales.ndim != 1 or scales.size == 0 or not np.all(np.isfinite(scales)) or np.any(scales <= 0):
            raise ValueError(f"similarity scales must be a non-empty list of positive numbers, got {scales.tolist()}")
        if not (np.isfinite(epsilon) and epsilon >= 0):
            raise ValueError(f"similarity epsilon must be >= 0, got {epsilon!r}")
        self.scales = scales
        self.epsilon = float(epsilon)
        self._last: np.ndarray | None = None

    def distance(self, state: np.ndarray) -> float | None:
        """Normalised distance from the remembered observation, None when there is none yet."""
        if self._last is None:
            return None
        return float(np.linalg.norm((np.asarray(state, dtype=np.float64) - self._last) / self.scales))

    def is_similar(self, state: np.ndarray) -> bool:
        """True when `state` is within epsilon of the remembered observation (never before the first one)."""
        distance = self.distance(state)
        return distance is not None and distance < self.epsilon

    def remember(self, state: np.ndarray) -> None:
        """Remember the joint state of an observation the policy processed (its chunk was used)."""
        self._last = np.array(state, dtype=np.float64)

    def clear(self) -> None:
        self._last = None
