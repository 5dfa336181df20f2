"""Robust estimate of the request-to-chunk latency, and the paper's anti-starvation bound."""

from __future__ import annotations

import math
from collections import deque

import numpy as np


class LatencyEstimator:
    """Keeps the last `window` latencies (seconds) and estimates from them with order statistics.

    The estimate of E[latency] is the median of the window, so a few warm-up outliers (the first forward pass is
    often several times slower) do not move it, and once `window` newer samples have arrived they are gone entirely
    (a running mean or maximum would keep them forever). `upper()` is a high quantile of the same window, for
    decisions that must be pessimistic. Not thread-safe: AsyncActionQueue calls it under its lock.
    """

    def __init__(self, window: int = 20, quantile: float = 0.9) -> None:
        self._samples: deque[float] = deque(maxlen=window)
        self._quantile = quantile
        self.last: float | None = None
        self.count = 0

    def add(self, seconds: float) -> None:
        """Record one latency; negative or non-finite values (clock steps) are ignored."""
        if not math.isfinite(seconds) or seconds < 0:
            return
        self._samples.append(seconds)
        self.last = seconds
        self.count += 1

    def estimate(self) -> float | None:
        """Robust E[latency] (median of the window), None before the first sample."""
        return float(np.median(self._samples)) if self._samples else None

    def upper(self) -> float | None:
        """Pessimistic latency (the configured quantile of the window), None before the first sample."""
        return float(np.quantile(self._samples, self._quantile)) if self._samples else None


def threshold_bound(latency: float, control_period: float, chunk_size: int) -> float:
    """The paper's anti-starvation bound g_min = E[latency] / (dt * n).

    Necessary for a queue that never runs dry. With dropped stale actions it is not sufficient: a chunk arrives
    with only n - latency/dt actions still ahead, so with one request in flight the queue also needs
    latency <= n * dt / 2 (see docs/async-inference.md).
    """
    return latency / (control_period * chunk_size)
